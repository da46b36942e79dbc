/**
 * How `startLoupe` starts with respect to authentication, over real HTTP: without keys on loopback it
 * serves as one default tenant and says once that authentication is off; without keys on another
 * address it refuses to start (naming `loupe keys create` and `LOUPE_AUTH=none`) and starts nothing;
 * `LOUPE_AUTH=none` opts out; with keys it starts anywhere and asks for one. The store is an external
 * Milvus address nobody answers on, so no Milvus Lite is started: these checks come before the store.
 */

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileKeyStore, KEYS_FILE, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { AppError } from "../../src/errors.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { unreachableAddress } from "../helpers/milvus-lite.ts";

const root = path.join(import.meta.dirname, "..", "..");

let dataDir: string;
let running: RunningLoupe | undefined;
let lines: Array<{ level: number; msg: string }>;

function logger() {
  lines = [];
  return createLogger({
    level: "info",
    destination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    }),
  });
}

async function env(overrides: Record<string, string>): Promise<Record<string, string>> {
  return {
    PORT: "0",
    LOUPE_DATA_DIR: dataDir,
    LOUPE_EMBEDDING_DIM: "8",
    LOUPE_MODEL_PACK: path.join(dataDir, "no-pack"),
    MILVUS_ADDRESS: await unreachableAddress(),
    ...overrides,
  };
}

async function start(overrides: Record<string, string>): Promise<RunningLoupe> {
  running = await startLoupe({ env: await env(overrides), cwd: root, logger: logger() });
  return running;
}

/** The port of a running Loupe, reached on loopback whatever it is bound to. */
function loopbackUrl(loupe: RunningLoupe): string {
  return `http://127.0.0.1:${new URL(loupe.url).port}`;
}

/** A GET with a chosen Host header (fetch does not let one be set). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { headers: { host } }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on("error", reject);
    request.end();
  });
}

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-startup-auth-"));
});

afterEach(async () => {
  await running?.stop();
  running = undefined;
  await rm(dataDir, { recursive: true, force: true });
});

describe("starting without keys", () => {
  it("on loopback: serves as the default tenant and says once that authentication is off", async () => {
    const loupe = await start({ HOST: "127.0.0.1" });
    const models = await fetch(`${loupe.url}/v1/models`);
    expect(models.status).toBe(200);
    const off = lines.filter((line) => line.msg.startsWith("authentication is off"));
    expect(off).toHaveLength(1);
    expect(off[0]?.level).toBe(40);
    expect(off[0]?.msg).toContain("loupe keys create");
    // The cross-site POST of the issue is refused, before any work.
    const crossSite = await fetch(`${loupe.url}/v1/images`, {
      method: "POST",
      headers: { origin: "https://evil.example" },
      body: new FormData(),
    });
    expect(crossSite.status).toBe(403);
    // A DNS-rebinding page sends its own name as Host.
    expect(await getWithHost(`${loupe.url}/v1/models`, "evil.example:80")).toBe(421);
    expect(await getWithHost(`${loupe.url}/healthz`, "rebind.127.0.0.1.nip.io")).toBe(421);
  });

  it("on any other address: refuses to start, naming the fix, and starts nothing", async () => {
    for (const host of ["0.0.0.0", "::"]) {
      const error = await startLoupe({ env: await env({ HOST: host }), cwd: root, logger: logger() }).then(
        async (loupe) => {
          await loupe.stop();
          throw new Error(`started on ${host}`);
        },
        (failure: unknown) => failure,
      );
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe("config_invalid");
      expect((error as AppError).message).toContain(`listen on ${host} with no API key`);
      expect((error as AppError).message).toContain("loupe keys create");
      expect((error as AppError).message).toContain("LOUPE_AUTH=none");
      expect(lines.some((line) => line.msg === "loupe is listening")).toBe(false);
    }
  });

  it("with LOUPE_AUTH=none: starts on every interface without a key, and says so", async () => {
    const loupe = await start({ HOST: "0.0.0.0", LOUPE_AUTH: "none" });
    expect((await fetch(`${loopbackUrl(loupe)}/v1/models`)).status).toBe(200);
    expect(
      lines.filter((line) => line.msg.startsWith("authentication is off (LOUPE_AUTH=none)")),
    ).toHaveLength(1);
    expect(await getWithHost(`${loopbackUrl(loupe)}/v1/models`, "10.1.2.3:8080")).toBe(200);
    expect(await getWithHost(`${loopbackUrl(loupe)}/v1/models`, "evil.example")).toBe(421);
  });
});

describe("starting with keys", () => {
  it("starts on every interface and asks for a key", async () => {
    const keys = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
    const { key } = await keys.create({ tenant: "acme", scopes: ["read"] });
    await keys.close();
    const loupe = await start({ HOST: "0.0.0.0" });
    expect(lines.some((line) => line.msg.startsWith("authentication is on"))).toBe(true);
    const url = `${loopbackUrl(loupe)}/v1/models`;
    const refused = await fetch(url);
    expect(refused.status).toBe(401);
    expect(refused.headers.get("www-authenticate")).toBe('Bearer realm="loupe"');
    expect((await fetch(url, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    expect((await fetch(`${loopbackUrl(loupe)}/healthz`)).status).toBe(200);
  });

  it("refuses to start on a key store it cannot read", async () => {
    const keys = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
    await keys.create({ tenant: "acme", scopes: ["read"] });
    await keys.close();
    await writeFile(path.join(keyStoreDir(dataDir), KEYS_FILE), "{ truncated");
    const error = await startLoupe({
      env: await env({ HOST: "127.0.0.1" }),
      cwd: root,
      logger: logger(),
    }).then(
      async (loupe) => {
        await loupe.stop();
        return undefined;
      },
      (failure: unknown) => failure,
    );
    expect((error as AppError).code).toBe("key_store_invalid");
  });
});
