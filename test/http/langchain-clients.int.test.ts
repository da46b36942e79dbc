/**
 * LangChain's OpenAI integrations pointed at a running Loupe (`loupe serve` in-process, real Milvus Lite,
 * the bundled pack, an API key, no LLM configured so answers come from the offline composer), used as a
 * LangChain user would, with nothing but `configuration.baseURL`, `apiKey` and `model` set:
 * `ChatOpenAI` answers and streams from /v1/chat/completions, and `OpenAIEmbeddings` (which sends
 * batches and asks for base64 by default) gets the pack's vectors from /v1/embeddings.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileKeyStore, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { cosineSimilarity } from "../../src/inference/index.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { multipart, renderShapes } from "../ingest/harness.ts";

const root = path.join(import.meta.dirname, "..", "..");

describe("LangChain's ChatOpenAI and OpenAIEmbeddings against Loupe", () => {
  let workDir: string;
  let loupe: RunningLoupe;
  let key: string;
  let baseURL: string;
  let packId: string;
  let dimension: number;
  let storedIds: string[];

  const authorized = { authorization: "" };

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-langchain-int-"));
    const dataDir = path.join(workDir, "data");
    const keys = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
    key = (await keys.create({ tenant: "langchain", scopes: ["read", "ingest"] })).key;
    await keys.close();
    authorized.authorization = `Bearer ${key}`;
    loupe = await startLoupe({
      env: { PORT: "0", LOUPE_DATA_DIR: dataDir, LOUPE_VENV_DIR: path.join(root, ".venv") },
      cwd: root,
      logger: createLogger({ level: "silent" }),
    });
    baseURL = `${loupe.url}/v1`;

    const images = await renderShapes({ count: 6, seed: 5150, size: 128 });
    const ingested = await fetch(`${baseURL}/images`, {
      method: "POST",
      headers: authorized,
      body: multipart({ files: images.map((bytes, index) => ({ name: `shape-${index}.jpg`, bytes })) }),
    });
    const body = (await ingested.json()) as { items: Array<{ id: string }> };
    expect(ingested.status, JSON.stringify(body).slice(0, 300)).toBe(200);
    storedIds = body.items.map((item) => item.id);
    // The pack's id, as a user finds it: on the stored items GET /v1/items lists.
    const listed = await fetch(`${baseURL}/items?limit=1`, { headers: authorized });
    packId = ((await listed.json()) as { items: Array<{ modelId: string }> }).items[0]?.modelId ?? "";
    expect(packId).toMatch(/\S/);
  }, 300_000);

  afterAll(async () => {
    await loupe?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  describe("ChatOpenAI", () => {
    const chat = (apiKey: string) =>
      new ChatOpenAI({ model: "loupe", apiKey, configuration: { baseURL }, maxRetries: 0 });

    it("invoke() gets an answer citing stored images", async () => {
      const message = await chat(key).invoke("Is there a red circle in any of the images?");
      expect(typeof message.content).toBe("string");
      const text = message.content as string;
      expect(text.trim().length).toBeGreaterThan(0);
      const cited = [...text.matchAll(/img_[A-Za-z0-9_-]+/g)].map((match) => match[0]);
      expect(cited.length, text).toBeGreaterThan(0);
      for (const id of cited) expect(storedIds).toContain(id);
      expect(message.response_metadata.model_name ?? message.response_metadata.model).toBe("loupe");
    });

    it("stream() yields chunks that add up to an answer", async () => {
      const chunks: string[] = [];
      for await (const chunk of await chat(key).stream("What shapes are in the images?")) {
        if (typeof chunk.content === "string") chunks.push(chunk.content);
      }
      expect(chunks.length).toBeGreaterThan(1);
      expect(chunks.join("").trim().length).toBeGreaterThan(0);
    });

    it("a wrong key is refused with 401, surfaced as LangChain's error", async () => {
      await expect(chat("not-a-key").invoke("hello")).rejects.toMatchObject({ status: 401 });
    });
  });

  describe("OpenAIEmbeddings", () => {
    const embeddings = (options: { batchSize?: number; dimensions?: number } = {}) =>
      new OpenAIEmbeddings({
        model: packId,
        apiKey: key,
        configuration: { baseURL },
        maxRetries: 0,
        ...options,
      });

    /** The vector /v1/embeddings answers in floats, as a reference for what LangChain decoded. */
    async function floatVector(text: string): Promise<number[]> {
      const response = await fetch(`${baseURL}/embeddings`, {
        method: "POST",
        headers: { ...authorized, "content-type": "application/json" },
        body: JSON.stringify({ model: packId, input: text, encoding_format: "float" }),
      });
      expect(response.status).toBe(200);
      return ((await response.json()) as { data: Array<{ embedding: number[] }> }).data[0]?.embedding ?? [];
    }

    it("embedQuery() returns the pack's vector for the text", async () => {
      const vector = await embeddings().embedQuery("a red circle");
      const reference = await floatVector("a red circle");
      dimension = reference.length;
      expect(vector).toHaveLength(dimension);
      expect(dimension).toBeGreaterThan(1);
      expect(cosineSimilarity(vector, reference)).toBeGreaterThanOrEqual(0.9999);
    });

    it("embedDocuments() returns one vector per document, in order, across batches", async () => {
      const documents = [
        "a red circle",
        "a blue square",
        "two green\ntriangles",
        "a yellow star",
        "an empty scene",
      ];
      // batchSize 2: LangChain sends three requests at once.
      const vectors = await embeddings({ batchSize: 2 }).embedDocuments(documents);
      expect(vectors).toHaveLength(documents.length);
      for (const [index, vector] of vectors.entries()) {
        expect(vector).toHaveLength(dimension);
        // LangChain replaces newlines with spaces before sending.
        const reference = await floatVector((documents[index] ?? "").replace(/\n/g, " "));
        expect(cosineSimilarity(vector, reference)).toBeGreaterThanOrEqual(0.9999);
      }
    });

    it("accepts `dimensions` equal to the pack's", async () => {
      const vector = await embeddings({ dimensions: dimension }).embedQuery("a yellow star");
      expect(vector).toHaveLength(dimension);
    });

    it("another model name is refused with a message naming the pack's id", async () => {
      const wrong = new OpenAIEmbeddings({ apiKey: key, configuration: { baseURL }, maxRetries: 0 });
      await expect(wrong.embedQuery("a red circle")).rejects.toThrow(packId);
    });
  });
});
