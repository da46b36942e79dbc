import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { UrlFetchError } from "../../src/errors.ts";
import {
  type FetchUrlOptions,
  fetchUrl,
  type HostLookup,
  type ResolvedAddress,
  sniffMediaType,
  urlFetcherUserAgent,
} from "../../src/media/url-fetcher.ts";
import { type HostileServer, startHostileServer } from "../helpers/hostile-servers.ts";

const imageTypes = ["image/jpeg", "image/png", "image/webp", "image/gif"];

let server: HostileServer;
let requestSpy: ReturnType<typeof vi.spyOn>;
let secureRequestSpy: ReturnType<typeof vi.spyOn>;

beforeAll(async () => {
  server = await startHostileServer();
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  requestSpy = vi.spyOn(http, "request");
  secureRequestSpy = vi.spyOn(https, "request");
});
afterEach(() => {
  // Every connection any test made went to loopback: the pinned lookup (or the literal host) is checked.
  for (const call of [...requestSpy.mock.calls, ...secureRequestSpy.mock.calls]) {
    const options = call[0] as http.RequestOptions;
    const pinned = pinnedAddress(options);
    expect(pinned).toMatch(/^127\.|^::1$/);
  }
  vi.restoreAllMocks();
});

/** The address a request would connect to: its pinned lookup's answer, or its literal host. */
function pinnedAddress(options: http.RequestOptions): string {
  let answer = String(options.host);
  options.lookup?.(String(options.host), {}, (_error, address) => {
    answer = String(address);
  });
  return answer;
}

function fixedLookup(table: Record<string, string[]>): HostLookup & { calls: string[] } {
  const calls: string[] = [];
  const lookup = async (hostname: string): Promise<ResolvedAddress[]> => {
    calls.push(hostname);
    const answers = table[hostname];
    if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return answers.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
  return Object.assign(lookup, { calls });
}

const loopbackOnly = ["127.0.0.1"];

function fetchImage(options: Partial<FetchUrlOptions> & { url: string }) {
  return fetchUrl({ maxBytes: 1_000_000, timeoutMs: 5_000, allowedContentTypes: imageTypes, ...options });
}

async function refusal(promise: Promise<unknown>): Promise<UrlFetchError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UrlFetchError);
  return error as UrlFetchError;
}

describe("fetchUrl: allowed fetches", () => {
  it("fetches an image from an allowed loopback host, with a fixed User-Agent and no cookies", async () => {
    const result = await fetchImage({ url: `${server.url}/png`, allowHosts: loopbackOnly });
    expect(result.bytes.equals(server.png)).toBe(true);
    expect(result.contentType).toBe("image/png");
    expect(result.finalUrl).toBe(`${server.url}/png`);
    const headers = server.lastHeaders();
    expect(headers?.["user-agent"]).toBe(urlFetcherUserAgent);
    expect(headers?.cookie).toBeUndefined();
    expect(headers?.authorization).toBeUndefined();
    expect(headers?.["accept-encoding"]).toBe("identity");
  });

  it("reports the type the bytes show when the label is another allowed type", async () => {
    const result = await fetchImage({ url: `${server.url}/png-as-jpeg`, allowHosts: loopbackOnly });
    expect(result.contentType).toBe("image/png");
  });

  it("follows up to maxRedirects redirects and reports the final URL", async () => {
    const result = await fetchImage({
      url: `${server.url}/chain/3`,
      allowHosts: loopbackOnly,
      maxRedirects: 3,
    });
    expect(result.finalUrl).toBe(`${server.url}/png`);
    const error = await refusal(
      fetchImage({ url: `${server.url}/chain/4`, allowHosts: loopbackOnly, maxRedirects: 3 }),
    );
    expect(error.status).toBe(422);
    expect(error.code).toBe("url_too_many_redirects");
    expect(error.message).toContain("at most 3 redirects");
  });

  it("opens a name on the allow-list whatever it resolves to", async () => {
    const lookup = fixedLookup({ "media.internal": ["127.0.0.1"] });
    const result = await fetchImage({
      url: `http://media.internal:${server.port}/jpeg`,
      allowHosts: ["media.internal"],
      lookup,
    });
    expect(result.contentType).toBe("image/jpeg");
    expect(server.lastHeaders()?.host).toBe(`media.internal:${server.port}`);
  });

  it("opens a CIDR range on the allow-list", async () => {
    const result = await fetchImage({ url: `${server.url}/png`, allowHosts: ["127.0.0.0/8"] });
    expect(result.bytes.length).toBe(server.png.length);
  });

  it("accepts a body exactly at the byte limit", async () => {
    const result = await fetchImage({
      url: `${server.url}/big?bytes=5000`,
      allowHosts: loopbackOnly,
      maxBytes: 5000,
    });
    expect(result.bytes.length).toBe(5000);
  });
});

describe("fetchUrl: addresses that are not public", () => {
  const literals = [
    ["http://127.0.0.1:PORT/png", "127.0.0.1", "loopback"],
    ["http://2130706433:PORT/png", "127.0.0.1", "loopback"],
    ["http://0177.0.0.1:PORT/png", "127.0.0.1", "loopback"],
    ["http://0x7f000001:PORT/png", "127.0.0.1", "loopback"],
    ["http://0x7f.1:PORT/png", "127.0.0.1", "loopback"],
    ["http://127.1:PORT/png", "127.0.0.1", "loopback"],
    ["http://017700000001:PORT/png", "127.0.0.1", "loopback"],
    ["http://[::1]:PORT/png", "::1", "loopback"],
    ["http://[::]:PORT/png", "::", "unspecified"],
    ["http://0.0.0.0:PORT/png", "0.0.0.0", "unspecified"],
    ["http://[::ffff:127.0.0.1]:PORT/png", "::ffff:7f00:1", "IPv4-mapped"],
    ["http://[::ffff:7f00:1]:PORT/png", "::ffff:7f00:1", "IPv4-mapped"],
    ["http://[::ffff:8.8.8.8]:PORT/png", "::ffff:808:808", "IPv4-mapped"],
    ["http://[::127.0.0.1]:PORT/png", "::7f00:1", "IPv4-compatible"],
    ["http://[64:ff9b::7f00:1]:PORT/png", "64:ff9b::7f00:1", "NAT64 address of 127.0.0.1, a loopback"],
    ["http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254, a link-local"],
    ["http://[2002:7f00:1::1]:PORT/png", "2002:7f00:1::1", "6to4 address of 127.0.0.1"],
    ["http://[2002:c0a8:101::1]/", "2002:c0a8:101::1", "6to4 address of 192.168.1.1, a private"],
    ["http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"],
    ["http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"],
    ["http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254", "unique-local"],
    ["http://[fe80::1]/", "fe80::1", "link-local"],
    ["http://[fc00::1]/", "fc00::1", "unique-local"],
    ["http://[ff02::1]/", "ff02::1", "multicast"],
    ["http://[2001:db8::1]/", "2001:db8::1", "documentation"],
    ["http://10.0.0.1/", "10.0.0.1", "private"],
    ["http://172.16.0.1/", "172.16.0.1", "private"],
    ["http://172.31.255.255/", "172.31.255.255", "private"],
    ["http://192.168.1.1/", "192.168.1.1", "private"],
    ["http://100.64.0.1/", "100.64.0.1", "shared"],
    ["http://192.0.0.8/", "192.0.0.8", "IETF"],
    ["http://192.0.2.1/", "192.0.2.1", "documentation"],
    ["http://198.18.0.1/", "198.18.0.1", "benchmarking"],
    ["http://198.51.100.7/", "198.51.100.7", "documentation"],
    ["http://203.0.113.9/", "203.0.113.9", "documentation"],
    ["http://224.0.0.1/", "224.0.0.1", "multicast"],
    ["http://240.0.0.1/", "240.0.0.1", "reserved"],
    ["http://255.255.255.255/", "255.255.255.255", "broadcast"],
  ] as const;

  it.each(literals)("refuses %s before any lookup or connection", async (template, address, words) => {
    const lookup = fixedLookup({});
    const url = template.replace("PORT", String(server.port));
    const connectionsBefore = server.connections();
    const error = await refusal(fetchImage({ url, lookup }));
    expect(error.status).toBe(400);
    expect(error.code).toBe("url_address_refused");
    expect(error.message).toContain(address);
    expect(error.message).toContain(words);
    expect(error.message).toContain("only public addresses are fetched");
    expect(error.message).toContain("LOUPE_URL_ALLOW_HOSTS");
    expect(lookup.calls).toEqual([]);
    expect(requestSpy).not.toHaveBeenCalled();
    expect(server.connections()).toBe(connectionsBefore);
  });

  it("explains a cloud-metadata refusal in one sentence", async () => {
    const error = await refusal(fetchImage({ url: "http://169.254.169.254/" }));
    expect(error.message).toBe(
      "http://169.254.169.254/ points at 169.254.169.254, a link-local address; only public addresses are fetched. Allow it with LOUPE_URL_ALLOW_HOSTS.",
    );
  });

  it("refuses a public-looking name that resolves to a private address, without connecting", async () => {
    const lookup = fixedLookup({
      "images.example.com": ["10.1.2.3"],
      "metadata.example.net": ["169.254.169.254"],
    });
    const error = await refusal(fetchImage({ url: "http://images.example.com/cat.jpg", lookup }));
    expect(error.message).toBe(
      "http://images.example.com/cat.jpg resolves to 10.1.2.3, a private address; only public addresses are fetched. Allow it with LOUPE_URL_ALLOW_HOSTS.",
    );
    const metadata = await refusal(fetchImage({ url: "http://metadata.example.net/latest", lookup }));
    expect(metadata.message).toContain("resolves to 169.254.169.254, a link-local address");
    expect(requestSpy).not.toHaveBeenCalled();
  });

  it("refuses a name when any of its addresses is private, even if the first is public", async () => {
    const lookup = fixedLookup({ "mixed.example.com": ["93.184.216.34", "127.0.0.1"] });
    const error = await refusal(fetchImage({ url: "http://mixed.example.com/a.png", lookup }));
    expect(error.message).toContain("resolves to 127.0.0.1, a loopback address");
    expect(requestSpy).not.toHaveBeenCalled();
  });

  it("refuses names resolving to IPv6 loopback and to mapped IPv4", async () => {
    const lookup = fixedLookup({ "six.example.com": ["::1"], "mapped.example.com": ["::ffff:10.0.0.1"] });
    expect((await refusal(fetchImage({ url: "http://six.example.com/", lookup }))).message).toContain(
      "::1, a loopback",
    );
    expect((await refusal(fetchImage({ url: "http://mapped.example.com/", lookup }))).message).toContain(
      "IPv4-mapped",
    );
    expect(requestSpy).not.toHaveBeenCalled();
  });

  it("does not let an address entry open other loopback addresses", async () => {
    const error = await refusal(
      fetchImage({ url: `http://[::1]:${server.port}/png`, allowHosts: loopbackOnly }),
    );
    expect(error.code).toBe("url_address_refused");
  });

  it("reports a name that does not resolve as unreachable (422)", async () => {
    const error = await refusal(fetchImage({ url: "http://nowhere.invalid/", lookup: fixedLookup({}) }));
    expect(error.status).toBe(422);
    expect(error.code).toBe("url_unreachable");
  });
});

describe("fetchUrl: DNS rebinding and redirects", () => {
  it("pins the connection to the checked address: one lookup, no second resolution", async () => {
    let answers = 0;
    const calls: string[] = [];
    // First answer loopback (allowed here), every later answer private: a rebinding resolver.
    const lookup: HostLookup = async (hostname) => {
      calls.push(hostname);
      answers += 1;
      return [{ address: answers === 1 ? "127.0.0.1" : "10.0.0.1", family: 4 }];
    };
    const result = await fetchImage({
      url: `http://rebind.example:${server.port}/png`,
      allowHosts: loopbackOnly,
      lookup,
    });
    expect(result.contentType).toBe("image/png");
    expect(calls).toEqual(["rebind.example"]);
    expect(requestSpy).toHaveBeenCalledTimes(1);
    expect(pinnedAddress(requestSpy.mock.calls[0]?.[0] as http.RequestOptions)).toBe("127.0.0.1");
  });

  it("checks every redirect hop again: a rebinding name on the second hop is refused", async () => {
    let answers = 0;
    const lookup: HostLookup = async () => {
      answers += 1;
      return [{ address: answers === 1 ? "127.0.0.1" : "10.0.0.1", family: 4 }];
    };
    const next = encodeURIComponent(`http://rebind.example:${server.port}/png`);
    const error = await refusal(
      fetchImage({
        url: `http://rebind.example:${server.port}/redirect?to=${next}`,
        allowHosts: loopbackOnly,
        lookup,
      }),
    );
    expect(error.message).toContain("resolves to 10.0.0.1, a private address");
    expect(requestSpy).toHaveBeenCalledTimes(1);
  });

  it.each([
    ["http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254, a link-local address"],
    ["http://[::1]/", "::1, a loopback address"],
    ["http://0x7f000001/", "127.0.0.1"],
    ["http://10.0.0.1/", "10.0.0.1, a private address"],
  ])("refuses a redirect to %s", async (target, words) => {
    const allowHosts = target.includes("0x7f") ? ["127.0.0.2"] : loopbackOnly;
    const server2 = await startHostileServer({ host: "127.0.0.2" });
    try {
      const base = target.includes("0x7f") ? server2.url : server.url;
      const error = await refusal(
        fetchImage({ url: `${base}/redirect?to=${encodeURIComponent(target)}&status=301`, allowHosts }),
      );
      expect(error.code).toBe("url_address_refused");
      expect(error.message).toContain(words);
      expect(requestSpy).toHaveBeenCalledTimes(1);
    } finally {
      await server2.close();
    }
  });

  it.each([
    "file:///etc/passwd",
    "ftp://example.com/a.png",
    "gopher://127.0.0.1:6379/_INFO",
    "data:image/png;base64,AAAA",
  ])("refuses a redirect to the scheme of %s", async (target) => {
    const error = await refusal(
      fetchImage({
        url: `${server.url}/redirect?to=${encodeURIComponent(target)}`,
        allowHosts: loopbackOnly,
      }),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe("url_invalid");
    expect(error.message).toContain("only http and https URLs are fetched");
  });

  it("stops a redirect loop at maxRedirects", async () => {
    const error = await refusal(
      fetchImage({ url: `${server.url}/loop`, allowHosts: loopbackOnly, maxRedirects: 2 }),
    );
    expect(error.code).toBe("url_too_many_redirects");
    expect(requestSpy).toHaveBeenCalledTimes(3);
  });

  it("follows no redirect at all when maxRedirects is 0", async () => {
    const error = await refusal(
      fetchImage({ url: `${server.url}/chain/1`, allowHosts: loopbackOnly, maxRedirects: 0 }),
    );
    expect(error.code).toBe("url_too_many_redirects");
  });
});

describe("fetchUrl: URLs refused as written", () => {
  it.each([
    "ftp://example.com/a.png",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "data:image/png;base64,AAAA",
    "gopher://x/",
  ])("refuses the scheme of %s", async (url) => {
    const error = await refusal(fetchImage({ url }));
    expect(error.status).toBe(400);
    expect(error.message).toContain("only http and https URLs are fetched");
  });

  it.each(["not a url", "http://", "//example.com/a.png", "http://1.2.3.4.5/"])(
    "refuses the malformed URL %j",
    async (url) => {
      const error = await refusal(fetchImage({ url }));
      expect(error.status).toBe(400);
      expect(error.code).toBe("url_invalid");
    },
  );

  it("refuses credentials in the URL and does not echo the password", async () => {
    const error = await refusal(
      fetchImage({ url: `http://alice:s3cret@127.0.0.1:${server.port}/png`, allowHosts: loopbackOnly }),
    );
    expect(error.status).toBe(400);
    expect(error.message).toContain("credentials");
    expect(error.message).not.toContain("s3cret");
    expect(requestSpy).not.toHaveBeenCalled();
  });
});

describe("fetchUrl: time and byte limits", () => {
  it("cuts off a slow-loris body at the deadline", async () => {
    const started = performance.now();
    const error = await refusal(
      fetchImage({ url: `${server.url}/slow-body?ms=100`, allowHosts: loopbackOnly, timeoutMs: 700 }),
    );
    const elapsed = performance.now() - started;
    expect(error.status).toBe(422);
    expect(error.code).toBe("url_timeout");
    expect(error.message).toContain("did not finish within 700 ms");
    expect(elapsed).toBeGreaterThanOrEqual(650);
    expect(elapsed).toBeLessThan(2_000);
  });

  it("cuts off a server that never sends headers", async () => {
    const started = performance.now();
    const error = await refusal(
      fetchImage({ url: `${server.url}/slow-headers`, allowHosts: loopbackOnly, timeoutMs: 500 }),
    );
    expect(error.code).toBe("url_timeout");
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("bounds a resolver that never answers by the same deadline", async () => {
    const lookup: HostLookup = () => new Promise(() => {});
    const error = await refusal(fetchImage({ url: "http://slow-dns.example/", lookup, timeoutMs: 300 }));
    expect(error.code).toBe("url_timeout");
  });

  it("refuses an honest Content-Length over the limit before reading the body", async () => {
    const error = await refusal(
      fetchImage({ url: `${server.url}/big?bytes=50000000`, allowHosts: loopbackOnly, maxBytes: 10_000 }),
    );
    expect(error.status).toBe(413);
    expect(error.code).toBe("url_too_large");
    expect(error.message).toContain("limit of 10000 bytes");
    expect(error.message).toContain("LOUPE_URL_MAX_BYTES");
  });

  it("stops a body without Content-Length as soon as it passes the limit", async () => {
    const started = performance.now();
    const error = await refusal(
      fetchImage({ url: `${server.url}/lying?bytes=500000000`, allowHosts: loopbackOnly, maxBytes: 100_000 }),
    );
    expect(error.status).toBe(413);
    expect(error.message).toContain(`more than 100000 bytes received`);
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it("honours the caller's abort signal", async () => {
    const controller = new AbortController();
    const pending = fetchImage({
      url: `${server.url}/slow-headers`,
      allowHosts: loopbackOnly,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(new Error("caller gave up")), 100);
    await expect(pending).rejects.toThrow("caller gave up");
  });
});

describe("fetchUrl: content checks", () => {
  it("refuses a type outside the allow-list and names what is allowed", async () => {
    const error = await refusal(fetchImage({ url: `${server.url}/html`, allowHosts: loopbackOnly }));
    expect(error.status).toBe(415);
    expect(error.message).toContain('"text/html; charset=utf-8"');
    expect(error.message).toContain("image/jpeg, image/png, image/webp, image/gif");
  });

  it("refuses text labelled as an image (magic bytes)", async () => {
    const error = await refusal(fetchImage({ url: `${server.url}/text-as-png`, allowHosts: loopbackOnly }));
    expect(error.status).toBe(415);
    expect(error.message).toContain("declared as image/png but its bytes do not start with the signature");
  });

  it("refuses bytes of an allowed-looking label whose real type is not allowed", async () => {
    const error = await refusal(
      fetchUrl({
        url: `${server.url}/gif-as-png`,
        allowHosts: loopbackOnly,
        maxBytes: 10_000,
        timeoutMs: 5_000,
        allowedContentTypes: ["image/png"],
      }),
    );
    expect(error.status).toBe(415);
    expect(error.message).toContain("its bytes are image/gif");
  });

  it("refuses an empty body", async () => {
    const error = await refusal(fetchImage({ url: `${server.url}/empty`, allowHosts: loopbackOnly }));
    expect(error.status).toBe(422);
    expect(error.code).toBe("url_empty");
  });

  it("refuses a compressed body (no decompression bombs)", async () => {
    const error = await refusal(fetchImage({ url: `${server.url}/gzip`, allowHosts: loopbackOnly }));
    expect(error.status).toBe(415);
    expect(error.message).toContain("gzip");
  });

  it("reports an upstream error status", async () => {
    const error = await refusal(fetchImage({ url: `${server.url}/status/500`, allowHosts: loopbackOnly }));
    expect(error.status).toBe(422);
    expect(error.message).toContain("answered HTTP 500");
  });

  it("accepts video types by their signatures", async () => {
    const box = (brand: string) =>
      Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from(`ftyp${brand}`), Buffer.alloc(12)]);
    expect(sniffMediaType(box("isom"))).toBe("video/mp4");
    expect(sniffMediaType(box("qt  "))).toBe("video/quicktime");
    const ebml = (docType: string) =>
      Buffer.concat([
        Buffer.from([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x82, 0x88]),
        Buffer.from(docType),
        Buffer.alloc(8),
      ]);
    expect(sniffMediaType(ebml("webm"))).toBe("video/webm");
    expect(sniffMediaType(ebml("matroska"))).toBe("video/x-matroska");
    expect(sniffMediaType(Buffer.from("RIFF\0\0\0\0AVI LIST"))).toBe("video/x-msvideo");
    expect(sniffMediaType(Buffer.from("#EXTM3U\n#EXT-X-TARGETDURATION:10\n"))).toBeUndefined();
    expect(sniffMediaType(Buffer.from("ffconcat version 1.0\nfile /etc/passwd\n"))).toBeUndefined();
  });
});

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("fetchUrl: https", () => {
  it.skipIf(!hasOpenssl())(
    "keeps the host name for TLS (SNI) on a pinned connection and verifies the certificate",
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "loupe-tls-"));
      try {
        execFileSync(
          "openssl",
          ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=media.test"].concat([
            "-keyout",
            path.join(dir, "key.pem"),
            "-out",
            path.join(dir, "cert.pem"),
          ]),
          { stdio: "ignore" },
        );
        const serverNames: Array<string | false | null> = [];
        const server = https.createServer(
          { key: readFileSync(path.join(dir, "key.pem")), cert: readFileSync(path.join(dir, "cert.pem")) },
          (_request, response) => {
            response.writeHead(200, { "Content-Type": "image/png" });
            response.end("x");
          },
        );
        server.on("secureConnection", (socket) => serverNames.push(socket.servername));
        // The client refuses the certificate, so the handshake ends here; the server still saw the SNI name.
        const sniSeen = new Promise<string>((resolve) => {
          server.on("tlsClientError", (_error, socket) =>
            resolve(String((socket as { servername?: string }).servername)),
          );
        });
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        const { port } = server.address() as AddressInfo;
        try {
          const error = await refusal(
            fetchImage({
              url: `https://media.test:${port}/a.png`,
              allowHosts: ["media.test"],
              lookup: fixedLookup({ "media.test": ["127.0.0.1"] }),
            }),
          );
          expect(error.code).toBe("url_unreachable");
          expect(error.message).toMatch(/self-signed|certificate/i);
          expect(await sniSeen).toBe("media.test");
          expect(serverNames).toEqual([]);
        } finally {
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
