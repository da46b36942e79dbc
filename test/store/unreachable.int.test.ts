/**
 * A Milvus that is down or hangs: every store call fails with a typed StoreError within a bounded
 * time, and health() says why.
 */
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StoreError } from "../../src/errors.ts";
import { createMilvusClient, createVectorStore, MilvusVectorStore } from "../../src/store/index.ts";
import { unreachableAddress } from "../helpers/milvus-lite.ts";

const TIMEOUT_MS = 1500;
const BOUND_MS = 10_000;
const vector = [1, 0, 0, 0, 0, 0, 0, 0];

async function timed<T>(call: () => Promise<T>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  const error = await call().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  return { error, ms: Date.now() - started };
}

function storeAt(address: string): MilvusVectorStore {
  // Built without createVectorStore, as if Milvus had gone away after start-up.
  return new MilvusVectorStore({
    client: createMilvusClient({ address, timeoutMs: TIMEOUT_MS }),
    dimension: 8,
    timeoutMs: TIMEOUT_MS,
    address,
  });
}

function callsOf(store: MilvusVectorStore): Array<[string, () => Promise<unknown>]> {
  return [
    ["search", () => store.search({ kind: "image", tenant: "acme", vector, topK: 3 })],
    ["query", () => store.query({ kind: "image", tenant: "acme", limit: 10 })],
    ["get", () => store.get({ kind: "image", tenant: "acme", ids: ["img_1"] })],
    ["count", () => store.count({ kind: "image", tenant: "acme" })],
    ["delete", () => store.delete({ kind: "image", tenant: "acme", ids: ["img_1"] })],
    [
      "upsert",
      () =>
        store.upsert({
          kind: "image",
          tenant: "acme",
          records: [{ id: "img_1", modelId: "m", mediaRef: "r", source: "s", vector }],
        }),
    ],
  ];
}

describe("Milvus unreachable (closed port)", () => {
  let address: string;
  beforeAll(async () => {
    address = await unreachableAddress();
  });

  it("fails createVectorStore fast with a StoreError", async () => {
    const { error, ms } = await timed(() =>
      createVectorStore({ address, dimension: 8, timeoutMs: TIMEOUT_MS }),
    );
    expect(error).toBeInstanceOf(StoreError);
    expect(error).toMatchObject({ code: "store_unavailable" });
    // The address is for the log, not for whoever reads the message.
    expect((error as Error).message).not.toContain(address);
    expect((error as Error).message).not.toMatch(/127\.0\.0\.1|:\d{2,5}\b/);
    expect((error as StoreError).context).toMatchObject({ address });
    expect(ms).toBeLessThan(BOUND_MS);
  });

  it("fails every store call fast and reports unhealthy", async () => {
    const store = storeAt(address);
    try {
      for (const [name, call] of callsOf(store)) {
        const { error, ms } = await timed(call);
        expect(error, name).toBeInstanceOf(StoreError);
        expect((error as Error).message, name).not.toContain(address);
        expect(ms, name).toBeLessThan(BOUND_MS);
      }
      const health = await store.health();
      expect(health.ok).toBe(false);
      expect(health.reason).toMatch(/unreachable/);
      expect(health.reason).not.toContain(address);
    } finally {
      await store.close();
    }
  });
});

describe("Milvus hanging (accepts connections, never answers)", () => {
  let server: Server;
  let address: string;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const bound = server.address();
    address = `127.0.0.1:${typeof bound === "object" && bound !== null ? bound.port : 0}`;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("times every call out within its deadline", async () => {
    const store = storeAt(address);
    try {
      for (const [name, call] of callsOf(store).slice(0, 2)) {
        const { error, ms } = await timed(call);
        expect(error, name).toBeInstanceOf(StoreError);
        expect(ms, name).toBeLessThan(TIMEOUT_MS + 1000);
      }
      const started = Date.now();
      const health = await store.health();
      expect(health.ok).toBe(false);
      expect(health.reason).toMatch(/did not answer|deadline|timed? ?out/i);
      expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 1000);
    } finally {
      await store.close();
    }
  });
});
