/**
 * Two API replicas of one deployment answer alike: two `startLoupe` (role api) in this process, each with
 * its own services, over one Milvus Lite, one PostgreSQL database (of this file's own), one Redis (db 12,
 * Loupe's keys there cleared before and after) and one data dir for blobs (replicas on one host may share
 * it). Images ingested through one are found by a search through the other, and the same search and the
 * same chat question (offline composer) get the same ids in the same order and the same answer from both.
 * A key revoked through one replica and refused by the other within 5 s is `shared-keys.test.ts`'s.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabasePool } from "../../src/db/database.ts";
import { migrate } from "../../src/db/migrate.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";
import { multipart, ROOT, renderShapes } from "../ingest/harness.ts";
import { createTestDatabase, type TestDatabase } from "./test-database.ts";

const REDIS_URL = `${process.env.LOUPE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379"}/12`;
const IMAGES = 24;

let database: TestDatabase;
let milvus: TestMilvusLite;
let dataDir: string;
const replicas: RunningLoupe[] = [];

/** Deletes Loupe's keys (queue, rate buckets, leases) from this file's Redis database. */
async function clearRedis(): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", "loupe:*", "COUNT", 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

async function postJson(replica: RunningLoupe, route: string, body: unknown): Promise<unknown> {
  const response = await fetch(`${replica.url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  expect(response.status, JSON.stringify(answer)).toBe(200);
  return answer;
}

interface SearchBody {
  items: Array<{ id: string; score: number }>;
}

interface ChatBody {
  answer: string;
  answered: boolean;
  confidence: number;
  citations: Array<{ id: string }>;
}

beforeAll(async () => {
  database = await createTestDatabase();
  const pool = createDatabasePool({ url: database.url });
  await migrate({ pool });
  await pool.end();
  await clearRedis();
  milvus = await startTestMilvusLite();
  dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-replicas-"));
  const env = {
    PORT: "0",
    LOUPE_DATA_DIR: dataDir,
    LOUPE_DATABASE_URL: database.url,
    LOUPE_REDIS_URL: REDIS_URL,
    MILVUS_ADDRESS: milvus.address,
    LOUPE_COLLECTION_PREFIX: uniquePrefix("replicas"),
    LOUPE_VENV_DIR: path.join(ROOT, ".venv"),
    LOUPE_KEY_SECRET: "r".repeat(40),
    LOUPE_BLOB_GC_AT_START: "off",
    // Grounding under a time budget could check fewer images on a busy machine; the answers must not hang on that.
    LOUPE_CHAT_GROUNDING_BUDGET_MS: "0",
  };
  const quiet = createLogger({ level: "silent" });
  // One after the other, as a rolling deploy would: the first creates the collections.
  replicas.push(await startLoupe({ env, cwd: ROOT, logger: quiet, role: "api" }));
  replicas.push(await startLoupe({ env, cwd: ROOT, logger: quiet, role: "api" }));
}, 180_000);

afterAll(async () => {
  for (const replica of replicas) await replica.stop();
  await milvus?.dispose();
  await database?.drop();
  await clearRedis().catch(() => undefined);
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

describe("two API replicas on one Milvus, one PostgreSQL and one Redis", () => {
  it("find what was ingested through the other, and answer the same search and chat alike", async () => {
    const [first, second] = replicas as [RunningLoupe, RunningLoupe];
    const images = await renderShapes({ count: IMAGES, seed: 21 });
    const ingested = await fetch(`${first.url}/v1/images`, {
      method: "POST",
      body: multipart({ files: images.map((bytes, index) => ({ name: `replica-${index}.jpg`, bytes })) }),
    });
    expect(ingested.status, await ingested.clone().text()).toBe(200);

    // Both see every record (Milvus makes new rows searchable within moments).
    const query = { text: "a red circle", topK: 10 };
    const deadline = Date.now() + 30_000;
    let answers: [SearchBody, SearchBody];
    for (;;) {
      answers = (await Promise.all(replicas.map((replica) => postJson(replica, "/v1/search", query)))) as [
        SearchBody,
        SearchBody,
      ];
      if (answers.every((answer) => answer.items.length === 10)) break;
      expect(Date.now(), "both replicas find the ingested images").toBeLessThan(deadline);
      await sleep(250);
    }
    expect(answers[0].items.map((item) => item.id)).toEqual(answers[1].items.map((item) => item.id));
    for (const [index, item] of answers[0].items.entries()) {
      expect(answers[1].items[index]?.score).toBeCloseTo(item.score, 5);
    }

    const byImage = { image: images[3]?.toString("base64"), topK: 5 };
    const [imageA, imageB] = (await Promise.all([
      postJson(first, "/v1/search", byImage),
      postJson(second, "/v1/search", byImage),
    ])) as [SearchBody, SearchBody];
    expect(imageA.items.length).toBe(5);
    expect(imageA.items.map((item) => item.id)).toEqual(imageB.items.map((item) => item.id));

    const question = { question: "Which images show a red circle?", composer: "offline" };
    const chatA = (await postJson(first, "/v1/chat", question)) as ChatBody;
    const chatB = (await postJson(second, "/v1/chat", question)) as ChatBody;
    expect(chatA.answer.length).toBeGreaterThan(0);
    expect(chatA.citations.length).toBeGreaterThan(0);
    expect(chatB.answer).toBe(chatA.answer);
    expect(chatB.answered).toBe(chatA.answered);
    expect(chatB.confidence).toBeCloseTo(chatA.confidence, 6);
    expect(chatB.citations.map((citation) => citation.id)).toEqual(
      chatA.citations.map((citation) => citation.id),
    );
  }, 120_000);
});
