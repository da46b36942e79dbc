/**
 * Questions about text in images, end to end over the real PP-OCRv4 engine, a real Milvus Lite and the
 * bundled pack: rendered screenshots are ingested (their text read at ingest), and the chain with the
 * offline composer quotes the line that answers an attached screenshot's question with the line's box,
 * finds the stored screenshot that shows an error code (English and Chinese) without reading it again,
 * and declines when no line holds what was asked.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { type Config, parseConfig } from "../../src/config.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { chatResponseSchema } from "../../src/http/routes/chat.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/index.ts";
import type { OcrEngine } from "../../src/inference/ocr/ocr-engine.ts";
import { createPpOcrEngine } from "../../src/inference/ocr/pp-ocr.ts";
import { createJobRegistry, type JobRegistry } from "../../src/ingest/jobs.ts";
import { createLogger } from "../../src/logger.ts";
import { createFsBlobStore } from "../../src/media/blob-store.ts";
import { readOcrMetadata } from "../../src/media/ocr-lines.ts";
import { createLoupeChain, type LoupeChainRunnable } from "../../src/rag/chain.ts";
import type { ChatResult } from "../../src/rag/types.ts";
import { assembleServices, type LoupeServices } from "../../src/services.ts";
import { createVectorStore, type MilvusVectorStore } from "../../src/store/index.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";
import { type RenderedLine, renderTextImage, stackLines } from "../helpers/text-images.ts";
import { multipart, ROOT } from "../ingest/harness.ts";

const TENANT = "default";

interface Screen {
  name: string;
  bytes: Buffer;
  lines: RenderedLine[];
}

async function screen(
  name: string,
  texts: string[],
  { size = 22, theme = "light" }: { size?: number; theme?: "light" | "dark" } = {},
): Promise<Screen> {
  const rendered = await renderTextImage({
    width: 720,
    height: 40 + texts.length * size * 2,
    lines: stackLines({ texts, size, x: 24, top: 20 }),
    theme,
  });
  return { name, bytes: rendered.bytes, lines: rendered.lines };
}

/** Intersection over union of two `[x, y, w, h]` boxes. */
function overlap(a: readonly number[], b: readonly number[]): number {
  const [ax, ay, aw, ah] = a as [number, number, number, number];
  const [bx, by, bw, bh] = b as [number, number, number, number];
  const width = Math.max(0, Math.min(ax + aw, bx + bw) - Math.max(ax, bx));
  const height = Math.max(0, Math.min(ay + ah, by + bh) - Math.max(ay, by));
  const inter = width * height;
  return inter / (aw * ah + bw * bh - inter);
}

/** An engine that counts its readings, over the real one. */
function counting(engine: OcrEngine): OcrEngine & { reads: () => number } {
  let reads = 0;
  return {
    id: engine.id,
    read: (input) => {
      reads += 1;
      return engine.read(input);
    },
    close: () => engine.close(),
    reads: () => reads,
  };
}

describe("questions about text in screenshots (real OCR, Milvus Lite, offline composer)", () => {
  let dataDir: string;
  let milvus: TestMilvusLite;
  let store: MilvusVectorStore;
  let models: ModelPack;
  let jobs: JobRegistry;
  let ocr: ReturnType<typeof counting>;
  let services: LoupeServices;
  let app: Hono<AppEnv>;
  let chain: LoupeChainRunnable;
  let config: Config;
  const screens: Record<string, Screen> = {};
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-chain-ocr-"));
    config = parseConfig({ env: { LOUPE_DATA_DIR: dataDir, LOUPE_LOG_LEVEL: "silent" }, cwd: ROOT });
    const logger = createLogger({ level: "silent" });
    [milvus, models] = await Promise.all([
      startTestMilvusLite(),
      loadModelPack({ dir: config.modelPack, imageLimits: { maxInputPixels: config.maxImagePixels } }),
    ]);
    store = await createVectorStore({
      address: milvus.address,
      collectionPrefix: uniquePrefix("chatocr"),
      dimension: models.dimension,
    });
    ocr = counting(
      createPpOcrEngine({
        limits: { maxSide: config.ocrMaxSide, maxLines: config.ocrMaxLines, timeoutMs: config.ocrTimeoutMs },
      }),
    );
    jobs = createJobRegistry();
    services = assembleServices({
      config,
      logger,
      store,
      models,
      blobs: createFsBlobStore({ dir: path.join(dataDir, "blobs") }),
      jobs,
      ocr,
    });
    app = createApp(services);
    chain = createLoupeChain({ ...services, ocr, logger, config });

    screens.dialog = await screen("dialog", [
      "Backup Agent",
      "E1234: License expired",
      "Contact your administrator to renew it.",
    ]);
    screens.terminal = await screen(
      "terminal",
      ["$ psql -h db.internal -U app", "Connection refused on port 5432"],
      { theme: "dark" },
    );
    screens.settings = await screen("settings", ["Display Settings", "Brightness 80 percent"]);
    screens.chinese = await screen("chinese", ["同步助手", "同步失败 错误 E2051"]);
    const stored = [screens.dialog, screens.terminal, screens.settings, screens.chinese] as Screen[];
    const response = await app.request("/v1/images", {
      method: "POST",
      body: multipart({
        files: stored.map((entry) => ({ name: `${entry.name}.png`, bytes: entry.bytes, type: "image/png" })),
      }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      items: Array<{ id?: string; filename?: string; status: string }>;
    };
    for (const item of body.items) {
      expect(item.status).toBe("stored");
      ids[(item.filename ?? "").replace(/\.png$/, "")] = item.id as string;
    }
  }, 240_000);

  afterAll(async () => {
    await jobs?.close();
    await store?.close();
    await models?.close();
    await ocr?.close();
    await milvus?.dispose();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  const ask = (question: string, images: Array<{ bytes: Uint8Array } | { id: string }> = []) =>
    chain.invoke({ tenant: TENANT, question, images, composer: "offline" });

  it("keeps the text read at ingest with the stored items", async () => {
    const [record] = await store.get({ kind: "image", tenant: TENANT, ids: [ids.dialog as string] });
    const reading = readOcrMetadata(record?.metadata);
    expect(reading?.lines.map((line) => line.text).join("\n")).toMatch(/E1234: ?License expired/i);
  });

  it("quotes the line of an attached screenshot that says what the error is, citing its box", async () => {
    const dialog = screens.dialog as Screen;
    const before = ocr.reads();
    const result = await ask("What does the error say?", [{ bytes: new Uint8Array(dialog.bytes) }]);
    expect(ocr.reads() - before).toBe(1);
    expect(result.answered).toBe(true);
    expect(result.answer).toMatch(/^The image reads "E1234: ?License expired" \[att_1\]\.$/i);
    const [citation] = result.citations;
    expect(citation?.id).toBe("att_1");
    const cited = citation?.lines?.[0];
    expect(cited?.text).toMatch(/E1234/);
    expect(overlap(cited?.box ?? [0, 0, 1, 1], dialog.lines[1]?.box ?? [])).toBeGreaterThan(0.5);
    // The response document describes the new fields.
    expect(chatResponseSchema.safeParse(result).success).toBe(true);
  }, 60_000);

  it("names the port an attached terminal fails on, and declines a question no line answers", async () => {
    const terminal = screens.terminal as Screen;
    const port = await ask("What port does it fail on?", [{ bytes: new Uint8Array(terminal.bytes) }]);
    expect(port.answer).toMatch(/^The port is 5432: The image reads ".*port 5432" \[att_1\]\.$/);
    const settings = screens.settings as Screen;
    const none = await ask("What is the error code?", [{ bytes: new Uint8Array(settings.bytes) }]);
    expect(none).toMatchObject({ answered: false, citations: [] });
  }, 60_000);

  it("finds the stored screenshot that shows an error code, from its stored reading", async () => {
    const before = ocr.reads();
    const english: ChatResult = await ask("Which screenshot shows error E1234?");
    expect(english.answered).toBe(true);
    expect(english.citations[0]?.id).toBe(ids.dialog);
    expect(english.answer).toContain(`[${ids.dialog}]`);
    const box = english.citations[0]?.lines?.[0]?.box ?? [0, 0, 1, 1];
    expect(overlap(box, (screens.dialog as Screen).lines[1]?.box ?? [])).toBeGreaterThan(0.5);

    const chinese = await ask("哪张截图显示错误 E2051？");
    expect(chinese.citations[0]?.id).toBe(ids.chinese);
    expect(chinese.answer).toContain("E2051");

    const missing = await ask("Which screenshot shows error E9876?");
    expect(missing).toMatchObject({ answered: false, citations: [] });
    expect(ocr.reads() - before).toBe(0);
  }, 60_000);

  it("answers over /v1/chat with the line's box in the citation", async () => {
    const response = await app.request("/v1/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "Which screenshot shows error E1234?", composer: "offline" }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as ChatResult;
    expect(body.citations[0]).toMatchObject({
      id: ids.dialog,
      lines: [expect.objectContaining({ line: 1 })],
    });
  }, 60_000);
});
