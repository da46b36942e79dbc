/**
 * Harness of the hostile-input suite: one real Loupe (embedded Milvus Lite, the bundled model pack, a
 * temporary data dir), a read-only view of its store and blob directory to prove that nothing was
 * stored, and a hostile HTTP server on 127.0.0.2, the only address the Loupe's URL allow-list opens.
 * Every other loopback address (127.0.0.1, where the Loupe itself listens, and ::1) stays refused.
 */
import dns from "node:dns/promises";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { expect } from "vitest";
import { readModelPackInfo } from "../../src/inference/model-pack.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { classifyAddress, parseAddress } from "../../src/media/ip-ranges.ts";
import { createVectorStore, RECORD_KINDS, type VectorStore } from "../../src/store/index.ts";
import { type HostileServer, startHostileServer } from "../helpers/hostile-servers.ts";

const root = path.join(import.meta.dirname, "..", "..");

/** Address of the hostile server; the Loupe under test allows exactly this one. */
export const HOSTILE_HOST = "127.0.0.2";
/** Deadline of URL downloads in the Loupe under test, so slow-loris cases end quickly. */
export const URL_TIMEOUT_MS = 1500;
/** Byte limit of URL downloads in the Loupe under test. */
export const URL_MAX_BYTES = 2_000_000;

/** What the store and the blob directory hold for the default tenant. */
export interface Holdings {
  image: number;
  video_segment: number;
  triple: number;
  blobs: number;
}

/** The suite's running world. */
export interface HostileWorld {
  loupe: RunningLoupe;
  hostile: HostileServer;
  /** A name that resolves to a non-public address on this machine (its host name, or `localhost`). */
  privateName: string;
  holdings(): Promise<Holdings>;
  /** POSTs JSON to the Loupe. */
  postJson(pathname: string, body: unknown): Promise<Response>;
  /** POSTs multipart with files under `field` (and string fields). */
  postFiles(
    pathname: string,
    options: {
      field?: string;
      files: Array<{ bytes: Buffer; name: string; type: string }>;
      fields?: Record<string, string>;
    },
  ): Promise<Response>;
  /**
   * Sends request headers that announce `declaredBytes` of body, then only `sentBytes`, and resolves
   * with the answer: a server that trusts the body to arrive, or reads it before checking its size,
   * hangs here until the deadline.
   */
  postDeclaringHugeBody(
    pathname: string,
    options: { declaredBytes: number; sentBytes: number; contentType: string; timeoutMs?: number },
  ): Promise<Response>;
  stop(): Promise<void>;
}

async function countFiles(dir: string): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).length;
}

/** The port of the embedded Milvus Lite, from its command line (Linux /proc). */
async function milvusLitePort(pid: number): Promise<number> {
  const args = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
  const port = Number(args[args.indexOf("--port") + 1]);
  if (!Number.isInteger(port) || port <= 0)
    throw new Error(`no --port in Milvus Lite's command line: ${args.join(" ")}`);
  return port;
}

/** The machine's own host name when it resolves to a non-public address, else `localhost`. */
async function findPrivateName(): Promise<string> {
  const name = os.hostname();
  try {
    const answers = await dns.lookup(name, { all: true });
    const allPrivate = answers.every((answer) => {
      const address = parseAddress(answer.address);
      return address !== undefined && !classifyAddress(address).allowed && answer.address !== HOSTILE_HOST;
    });
    if (answers.length > 0 && allPrivate && name !== "localhost") return name;
  } catch {
    // Falls back below.
  }
  return "localhost";
}

/** Starts the world. */
export async function startHostileWorld(): Promise<HostileWorld> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-hostile-"));
  const hostile = await startHostileServer({ host: HOSTILE_HOST });
  let loupe: RunningLoupe | undefined;
  let counter: VectorStore | undefined;
  try {
    loupe = await startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: dataDir,
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_URL_ALLOW_HOSTS: HOSTILE_HOST,
        LOUPE_URL_TIMEOUT_MS: String(URL_TIMEOUT_MS),
        LOUPE_URL_MAX_BYTES: String(URL_MAX_BYTES),
      },
      cwd: root,
      logger: createLogger({ level: "silent" }),
    });
    const pack = await readModelPackInfo({ dir: loupe.config.modelPack });
    counter = await createVectorStore({
      address: `127.0.0.1:${await milvusLitePort(loupe.milvusLitePid ?? -1)}`,
      dimension: pack.dimension,
      collectionPrefix: loupe.config.collectionPrefix,
      metric: loupe.config.metric,
      indexType: loupe.config.indexType,
    });
  } catch (error) {
    await loupe?.stop();
    await hostile.close();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const running = loupe;
  const store = counter;
  const tenant = running.config.defaultTenant;
  const privateName = await findPrivateName();
  return {
    loupe: running,
    hostile,
    privateName,
    async holdings() {
      const counts = await Promise.all(RECORD_KINDS.map((kind) => store.count({ kind, tenant })));
      return {
        image: counts[0] ?? -1,
        video_segment: counts[1] ?? -1,
        triple: counts[2] ?? -1,
        blobs: await countFiles(path.join(dataDir, "blobs")),
      };
    },
    postJson(pathname, body) {
      return fetch(`${running.url}${pathname}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    },
    postFiles(pathname, { field = "files", files, fields = {} }) {
      const form = new FormData();
      for (const [name, value] of Object.entries(fields)) form.append(name, value);
      for (const file of files)
        form.append(field, new Blob([new Uint8Array(file.bytes)], { type: file.type }), file.name);
      return fetch(`${running.url}${pathname}`, { method: "POST", body: form });
    },
    postDeclaringHugeBody(pathname, { declaredBytes, sentBytes, contentType, timeoutMs = 10_000 }) {
      return new Promise<Response>((resolve, reject) => {
        const request = http.request(`${running.url}${pathname}`, {
          method: "POST",
          headers: { "content-type": contentType, "content-length": String(declaredBytes) },
          timeout: timeoutMs,
        });
        request.on("response", (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => {
            request.destroy();
            resolve(
              new Response(Buffer.concat(chunks).toString("utf8"), { status: response.statusCode ?? 0 }),
            );
          });
        });
        request.on("timeout", () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
        request.on("error", reject);
        request.write(Buffer.alloc(sentBytes, 0x61));
      });
    },
    async stop() {
      await store.close();
      await running.stop();
      await hostile.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** What a refused request must show. */
export interface RefusalExpectation {
  /** Allowed statuses (all 4xx); any 4xx when absent. */
  status?: number | readonly number[];
  /**
   * Error code of the refusal: the envelope's, or, for batch endpoints that answer a request whose every
   * item failed with one envelope (`all_items_failed`), the first item's.
   */
  code?: string;
  /** Patterns the message must match: what was wrong, and what is allowed or how to fix it. */
  says: readonly RegExp[];
}

/**
 * Runs one hostile request and checks the suite's three promises: a 4xx in the error envelope whose
 * message says what was wrong and what is allowed; nothing stored (store counts and blob files
 * unchanged); the server still healthy (`/healthz` 200). Returns the message for further checks.
 */
export async function expectRefused(
  world: HostileWorld,
  send: () => Promise<Response>,
  expectation: RefusalExpectation,
): Promise<string> {
  const before = await world.holdings();
  const response = await send();
  const text = await response.text();
  let body: {
    error?: { code?: unknown; message?: unknown; requestId?: unknown };
    items?: Array<{ error?: { code?: unknown } }>;
  } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // Checked below: the envelope is required.
  }
  const summary = `HTTP ${response.status}: ${text.slice(0, 600)}`;
  expect(response.status, summary).toBeGreaterThanOrEqual(400);
  expect(response.status, summary).toBeLessThan(500);
  if (expectation.status !== undefined) {
    const allowed = typeof expectation.status === "number" ? [expectation.status] : expectation.status;
    expect(allowed, summary).toContain(response.status);
  }
  expect(typeof body.error?.code, summary).toBe("string");
  expect(typeof body.error?.requestId, summary).toBe("string");
  if (expectation.code !== undefined) {
    expect([body.error?.code, body.items?.[0]?.error?.code], summary).toContain(expectation.code);
  }
  const message = String(body.error?.message ?? "");
  for (const pattern of expectation.says) expect(message, summary).toMatch(pattern);
  expect(await world.holdings(), "nothing may be stored").toEqual(before);
  const health = await fetch(`${world.loupe.url}/healthz`);
  expect(health.status).toBe(200);
  return message;
}
