/**
 * The supervised store's roll-back after Milvus Lite dies, for updates: an update that was in flight
 * rewrites rows that existed before it, so it is never rolled back by deleting them; a confirmed update
 * keeps its rows out of the roll-back of an upsert still in flight. Lite and the store are stand-ins
 * here, so the moment of death is exact.
 */
import { describe, expect, it } from "vitest";
import { NotReadyError } from "../../src/errors.ts";
import type { DeleteRequest, RecordKind, VectorStore } from "../../src/store/index.ts";
import type { MilvusLiteExit, MilvusLiteProcess } from "../../src/store/milvus-lite.ts";
import { SupervisedVectorStore } from "../../src/store/supervised-vector-store.ts";

interface FakeGeneration {
  lite: MilvusLiteProcess;
  die(): void;
  store: VectorStore;
  deletes: DeleteRequest<RecordKind>[];
  /** Settles the pending update calls with success. */
  confirmUpdates(): void;
}

function fakeGeneration(port: number): FakeGeneration {
  let die: (exit: MilvusLiteExit) => void = () => undefined;
  const exited = new Promise<MilvusLiteExit>((resolve) => {
    die = resolve;
  });
  const deletes: DeleteRequest<RecordKind>[] = [];
  const pendingUpdates: Array<() => void> = [];
  const never = new Promise<never>(() => undefined);
  const store = {
    upsert: () => never,
    update: ({ patches }: { patches: readonly unknown[] }) =>
      new Promise((resolve) => pendingUpdates.push(() => resolve({ updated: patches.length }))),
    delete: async (request: DeleteRequest<RecordKind>) => {
      deletes.push(request);
      return { deleted: request.ids?.length ?? 0 };
    },
    health: async () => ({ ok: true }),
    close: async () => undefined,
  } as unknown as VectorStore;
  return {
    lite: {
      address: `127.0.0.1:${port}`,
      pid: port,
      exited,
      stop: async () => die({ code: 0, signal: null } as MilvusLiteExit),
    },
    die: () => die({ code: null, signal: "SIGKILL" } as MilvusLiteExit),
    store,
    deletes,
    confirmUpdates: () => {
      for (const confirm of pendingUpdates.splice(0)) confirm();
    },
  };
}

async function supervised(): Promise<{ store: SupervisedVectorStore; generations: FakeGeneration[] }> {
  const generations: FakeGeneration[] = [];
  const store = await SupervisedVectorStore.start({
    startLite: async () => {
      const generation = fakeGeneration(40_000 + generations.length);
      generations.push(generation);
      return generation.lite;
    },
    connect: async (address) => {
      const generation = generations.find((candidate) => candidate.lite.address === address);
      if (generation === undefined) throw new Error(`no generation at ${address}`);
      return generation.store;
    },
    restartAttempts: 2,
  });
  return { store, generations };
}

async function until(probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("SupervisedVectorStore and update", () => {
  it("fails an update in flight when Lite dies, and never deletes its rows afterwards", async () => {
    const { store, generations } = await supervised();
    try {
      const update = store.update({
        kind: "image",
        tenant: "acme",
        patches: [{ id: "img_a", ocrText: "E1234" }],
      });
      generations[0]?.die();
      await expect(update).rejects.toBeInstanceOf(NotReadyError);
      await until(async () => (await store.health()).ok);
      expect(generations).toHaveLength(2);
      expect(generations[1]?.deletes).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it("rolls back an unconfirmed upsert but leaves out the rows a confirmed update rewrote", async () => {
    const { store, generations } = await supervised();
    try {
      const upsert = store.upsert({
        kind: "image",
        tenant: "acme",
        records: ["img_new", "img_old"].map((id) => ({
          id,
          modelId: "m",
          mediaRef: `blob:${id}`,
          source: "test",
          vector: [1, 0],
        })),
      });
      const update = store.update({
        kind: "image",
        tenant: "acme",
        patches: [{ id: "img_old", ocrText: "x" }],
      });
      generations[0]?.confirmUpdates();
      await expect(update).resolves.toEqual({ updated: 1 });
      generations[0]?.die();
      await expect(upsert).rejects.toBeInstanceOf(NotReadyError);
      await until(async () => (await store.health()).ok);
      expect(generations[1]?.deletes.map((request) => request.ids)).toEqual([["img_new"]]);
    } finally {
      await store.close();
    }
  });
});
