import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createServer as createTcpServer, type Socket, type Server as TcpServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DownloadError, ValidationError } from "../../src/errors.ts";
import { loadModelPack } from "../../src/inference/model-pack.ts";
import { type FetchProgress, fetchPack, resolvePackName } from "../../src/inference/pack-fetch.ts";

const fixturePack = join(import.meta.dirname, "fixtures", "tiny-clip-pack");
const REPO_PREFIX = "/Xenova/clip-vit-base-patch32/resolve/main/";

interface FakeHub {
  server: Server;
  baseUrl: string;
  requests: string[];
  /** Files served with a wrong declared sha256. */
  corrupt: Set<string>;
  /** Files answered with 404. */
  missing: Set<string>;
}

/**
 * A local stand-in for the hub: serves the tiny CLIP-layout fixture under the hub's URL layout, answering
 * ONNX files with a redirect carrying `X-Linked-Etag` (the sha256) as the hub does for LFS files.
 */
async function startFakeHub(): Promise<FakeHub> {
  const requests: string[] = [];
  const corrupt = new Set<string>();
  const missing = new Set<string>();
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    requests.push(url.pathname);
    void (async () => {
      if (url.pathname.startsWith("/cdn/")) {
        const file = url.pathname.slice("/cdn/".length);
        const body = await readFile(join(fixturePack, file));
        response.writeHead(200, {
          "content-length": body.length,
          "content-type": "application/octet-stream",
        });
        response.end(body);
        return;
      }
      if (!url.pathname.startsWith(REPO_PREFIX)) {
        response.writeHead(404).end("not found");
        return;
      }
      const file = url.pathname.slice(REPO_PREFIX.length).replace("_quantized", "");
      if (missing.has(file)) {
        response.writeHead(404).end("Entry not found");
        return;
      }
      let body: Buffer;
      try {
        body = await readFile(join(fixturePack, file));
      } catch {
        response.writeHead(404).end("Entry not found");
        return;
      }
      if (file.endsWith(".onnx")) {
        const sha = corrupt.has(file) ? "0".repeat(64) : createHash("sha256").update(body).digest("hex");
        response.writeHead(302, { location: `/cdn/${file}`, "x-linked-etag": `"${sha}"` }).end();
        return;
      }
      response.writeHead(200, { "content-length": body.length, etag: '"0123abcd"' });
      response.end(body);
    })();
  });
  await new Promise<void>((resolveListen) => server.listen(0, "127.0.0.1", resolveListen));
  const { port } = server.address() as AddressInfo;
  return { server, baseUrl: `http://127.0.0.1:${port}`, requests, corrupt, missing };
}

let hub: FakeHub;
let scratch: string;

beforeAll(async () => {
  hub = await startFakeHub();
  scratch = await mkdtemp(join(tmpdir(), "loupe-fetch-test-"));
});

afterAll(async () => {
  await new Promise((resolveClose) => hub.server.close(resolveClose));
  await rm(scratch, { recursive: true, force: true });
});

describe("fetchPack against a local hub", () => {
  it("downloads every file, checks LFS hashes, writes a manifest, and the pack loads", async () => {
    const modelsDir = join(scratch, "ok");
    const events: FetchProgress[] = [];
    const result = await fetchPack({
      name: "clip-vit-base-patch32",
      modelsDir,
      baseUrl: hub.baseUrl,
      onProgress: (event) => events.push(event),
    });
    expect(result.dir).toBe(join(modelsDir, "clip-vit-base-patch32"));
    expect(result.files.map((file) => file.file)).toEqual([
      "config.json",
      "preprocessor_config.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "onnx/vision_model.onnx",
      "onnx/text_model.onnx",
    ]);
    expect(result.files.filter((file) => file.verified).map((file) => file.file)).toEqual([
      "onnx/vision_model.onnx",
      "onnx/text_model.onnx",
    ]);
    expect(events.filter((event) => event.type === "file-done")).toHaveLength(6);
    expect(events.some((event) => event.type === "file-progress")).toBe(true);
    // Nothing but the pack is left in the models directory (no staging or partial files).
    expect(await readdir(modelsDir)).toEqual(["clip-vit-base-patch32"]);

    const pack = await loadModelPack({ dir: result.dir });
    try {
      expect(pack.modelId).toBe("clip-vit-base-patch32");
      expect(pack.capabilities).toEqual({ vqa: false, video: false, detection: false });
      const [embedding] = await pack.textEmbedder.embed({ texts: ["a red circle"] });
      expect(embedding).toHaveLength(16);
    } finally {
      await pack.close();
    }
  });

  it("refuses to overwrite an installed pack unless asked", async () => {
    const modelsDir = join(scratch, "twice");
    await fetchPack({ name: "clip-vit-base-patch32", modelsDir, baseUrl: hub.baseUrl });
    await expect(
      fetchPack({ name: "clip-vit-base-patch32", modelsDir, baseUrl: hub.baseUrl }),
    ).rejects.toThrow(/exists already; pass --force/);
    await fetchPack({ name: "clip-vit-base-patch32", modelsDir, baseUrl: hub.baseUrl, overwrite: true });
    expect(await readdir(modelsDir)).toEqual(["clip-vit-base-patch32"]);
  });

  it("fails on a sha256 mismatch and leaves nothing installed", async () => {
    const modelsDir = join(scratch, "corrupt");
    hub.corrupt.add("onnx/text_model.onnx");
    try {
      const error = await fetchPack({ name: "clip-vit-base-patch32", modelsDir, baseUrl: hub.baseUrl }).catch(
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(DownloadError);
      expect((error as DownloadError).message).toMatch(
        /onnx\/text_model\.onnx does not match the sha256 the server declares: expected 0{64}, got [0-9a-f]{64}/,
      );
      expect(await readdir(modelsDir)).toEqual([]);
    } finally {
      hub.corrupt.clear();
    }
  });

  it("skips an optional file the repository lacks, but not a required one", async () => {
    hub.missing.add("tokenizer_config.json");
    try {
      const result = await fetchPack({
        name: "clip-vit-base-patch32-quantized",
        modelsDir: join(scratch, "optional"),
        baseUrl: hub.baseUrl,
      });
      expect(result.files.map((file) => file.file)).not.toContain("tokenizer_config.json");
      const pack = await loadModelPack({ dir: result.dir });
      await pack.close();
      hub.missing.add("preprocessor_config.json");
      await expect(
        fetchPack({
          name: "clip-vit-base-patch32",
          modelsDir: join(scratch, "required"),
          baseUrl: hub.baseUrl,
        }),
      ).rejects.toThrow(/preprocessor_config\.json .* failed with HTTP 404/);
    } finally {
      hub.missing.clear();
    }
  });

  it("reports a missing repository file as HTTP 404", async () => {
    const error = await fetchPack({
      name: "someone/not-a-pack",
      modelsDir: join(scratch, "missing"),
      baseUrl: hub.baseUrl,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as DownloadError).message).toMatch(
      /config\.json .* failed with HTTP 404\. Check the pack name/,
    );
  });

  it("rejects unknown names that are not repositories", () => {
    expect(() => resolvePackName("../../etc")).toThrow(ValidationError);
    expect(resolvePackName("Xenova/clip-vit-base-patch32").dirName).toBe("clip-vit-base-patch32");
  });
});

describe("fetchPack offline", () => {
  it("fails at once, naming the host, when nothing listens", async () => {
    // Bind and release a port so that nothing listens there.
    const probe = createTcpServer();
    await new Promise<void>((resolveListen) => probe.listen(0, "127.0.0.1", resolveListen));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolveClose) => probe.close(resolveClose));

    const started = performance.now();
    const error = await fetchPack({
      name: "clip-vit-base-patch32",
      modelsDir: join(scratch, "offline"),
      baseUrl: `http://127.0.0.1:${port}`,
    }).catch((caught: unknown) => caught);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as DownloadError).message).toContain(`Could not reach 127.0.0.1:${port} (ECONNREFUSED)`);
    expect((error as DownloadError).message).toContain("appears to be offline");
  });

  it("gives up after the connect timeout when a host accepts but never answers", async () => {
    const sockets: Socket[] = [];
    const silent: TcpServer = createTcpServer((socket) => sockets.push(socket));
    await new Promise<void>((resolveListen) => silent.listen(0, "127.0.0.1", resolveListen));
    const { port } = silent.address() as AddressInfo;
    try {
      const started = performance.now();
      const error = await fetchPack({
        name: "clip-vit-base-patch32",
        modelsDir: join(scratch, "silent"),
        baseUrl: `http://127.0.0.1:${port}`,
        connectTimeoutMs: 300,
      }).catch((caught: unknown) => caught);
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(3000);
      expect((error as DownloadError).message).toMatch(
        /Could not reach 127\.0\.0\.1:\d+ \(no response within 300 ms\)/,
      );
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolveClose) => silent.close(resolveClose));
    }
  });
});
