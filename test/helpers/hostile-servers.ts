/**
 * A local HTTP server that misbehaves on purpose, for tests of URL fetching: redirects (to anywhere,
 * in loops), slow-loris bodies, bodies over any limit with honest or lying lengths, wrong content
 * types, endless headers. It listens on a loopback address only and counts connections and requests,
 * so tests can assert that a refused URL never produced one.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";

/** A running hostile server. */
export interface HostileServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  host: string;
  port: number;
  /** TCP connections accepted so far. */
  connections(): number;
  /** Request paths seen so far, in order (with query strings). */
  requests(): string[];
  /** Headers of the last request. */
  lastHeaders(): http.IncomingHttpHeaders | undefined;
  /** A small valid PNG the `/png` route serves. */
  png: Buffer;
  /** A small valid JPEG the `/jpeg` route serves. */
  jpeg: Buffer;
  close(): Promise<void>;
}

/** Options of {@link startHostileServer}. */
export interface StartHostileServerOptions {
  /** Loopback address to listen on; 127.0.0.1 by default (any 127.x.y.z works on Linux). */
  host?: string;
}

/**
 * Starts the server. Routes:
 * - `/png`, `/jpeg`: a valid 32×32 image with its type; `/png-as-jpeg`: PNG bytes labelled JPEG.
 * - `/text-as-png`: text labelled `image/png`; `/gif-as-png`: GIF bytes labelled PNG; `/html`: an HTML page.
 * - `/empty`: a 0-byte `image/png`.
 * - `/redirect?to=URL&status=302`: a redirect; `/loop`: redirects to itself; `/chain/N`: N more hops to `/png`.
 * - `/big?bytes=N`: N bytes of PNG-signature body with an honest Content-Length;
 *   `/lying?bytes=N`: the same body with no Content-Length at all (chunked), so only counting stops it.
 * - `/slow-body?ms=M`: PNG headers at once, then one byte every M ms, forever; `/slow-headers`: never answers.
 * - `/status/N`: answers HTTP N; `/gzip`: a body claiming `Content-Encoding: gzip`.
 */
export async function startHostileServer({
  host = "127.0.0.1",
}: StartHostileServerOptions = {}): Promise<HostileServer> {
  const png = await sharp({
    create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 30, b: 30 } },
  })
    .png()
    .toBuffer();
  const jpeg = await sharp({
    create: { width: 32, height: 32, channels: 3, background: { r: 30, g: 30, b: 200 } },
  })
    .jpeg()
    .toBuffer();
  const gif = Buffer.from("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7", "base64");
  let connectionCount = 0;
  const seen: string[] = [];
  let headersSeen: http.IncomingHttpHeaders | undefined;
  const timers = new Set<NodeJS.Timeout>();

  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://local");
    seen.push(`${url.pathname}${url.search}`);
    headersSeen = request.headers;
    const send = (type: string, body: Buffer | string) => {
      response.writeHead(200, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
      response.end(body);
    };
    const path = url.pathname;
    if (path === "/png") return send("image/png", png);
    if (path === "/jpeg") return send("image/jpeg", jpeg);
    if (path === "/png-as-jpeg") return send("image/jpeg", png);
    if (path === "/text-as-png") return send("image/png", "this is not an image, only text pretending\n");
    if (path === "/gif-as-png") return send("image/png", gif);
    if (path === "/html") return send("text/html; charset=utf-8", "<html><body>hello</body></html>");
    if (path === "/empty") return send("image/png", Buffer.alloc(0));
    if (path === "/redirect") {
      response.writeHead(Number(url.searchParams.get("status") ?? 302), {
        Location: url.searchParams.get("to") ?? "/png",
      });
      return response.end();
    }
    if (path === "/loop") {
      response.writeHead(302, { Location: "/loop" });
      return response.end();
    }
    const chain = /^\/chain\/(\d+)$/.exec(path);
    if (chain) {
      const left = Number(chain[1]);
      response.writeHead(302, { Location: left <= 1 ? "/png" : `/chain/${left - 1}` });
      return response.end();
    }
    if (path === "/big" || path === "/lying") {
      const total = Number(url.searchParams.get("bytes") ?? 1_000_000);
      const headers: http.OutgoingHttpHeaders = { "Content-Type": "image/png" };
      if (path === "/big") headers["Content-Length"] = total;
      response.writeHead(200, headers);
      const chunk = Buffer.alloc(64 * 1024, 0);
      png.copy(chunk, 0, 0, 8);
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          const size = Math.min(chunk.length, total - sent);
          sent += size;
          if (!response.write(chunk.subarray(0, size))) {
            response.once("drain", pump);
            return;
          }
        }
        response.end();
      };
      response.on("close", () => {
        sent = total;
      });
      return pump();
    }
    if (path === "/slow-body") {
      const ms = Number(url.searchParams.get("ms") ?? 1000);
      response.writeHead(200, { "Content-Type": "image/png", "Content-Length": 1_000_000 });
      response.write(png.subarray(0, 8));
      const timer = setInterval(() => response.write(Buffer.from([0])), ms);
      timers.add(timer);
      response.on("close", () => {
        clearInterval(timer);
        timers.delete(timer);
      });
      return;
    }
    if (path === "/slow-headers") {
      // Never answers; the socket stays open until the client gives up.
      return;
    }
    const status = /^\/status\/(\d{3})$/.exec(path);
    if (status) {
      response.writeHead(Number(status[1]), { "Content-Type": "text/plain" });
      return response.end("no");
    }
    if (path === "/gzip") {
      response.writeHead(200, {
        "Content-Type": "image/png",
        "Content-Encoding": "gzip",
        "Content-Length": png.length,
      });
      return response.end(png);
    }
    response.writeHead(404, { "Content-Type": "text/plain" });
    response.end("not found");
  });
  server.on("connection", () => {
    connectionCount += 1;
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}`,
    host,
    port,
    connections: () => connectionCount,
    requests: () => [...seen],
    lastHeaders: () => headersSeen,
    png,
    jpeg,
    close: async () => {
      for (const timer of timers) clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
