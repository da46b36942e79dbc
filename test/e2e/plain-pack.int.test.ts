/**
 * A plain CLIP pack (two towers, as the Hugging Face hub serves one: no `loupe` block, no VQA or video head, no
 * vocabulary) serving every route that needs no head, through HTTP against a real Loupe (`startLoupe`: embedded
 * Milvus Lite, a temporary data dir): images, a video (segments from averaged frame embeddings) and triples go
 * in; search, similar and classify answer; chat answers offline saying what the pack cannot do, then, after a
 * restart with an LLM configured (a local OpenAI-compatible server), from retrieved evidence and the images;
 * `/v1/vqa` is a 503 naming the missing head.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { generateDataset, readJsonl } from "../../src/synth/index.ts";
import { messageText, type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";
import { makePlainPack } from "../helpers/plain-pack.ts";

const root = path.join(import.meta.dirname, "..", "..");

interface SceneLine {
  id: string;
  file: string;
  descriptions: { text: string }[];
}

interface VideoLine {
  id: string;
  file: string;
  segments: { start: number; end: number; action: string; descriptions: { text: string }[] }[];
}

interface TripleLine {
  image: string;
  question: string;
  answer: string;
  file: string;
}

interface ResultItem {
  kind: string;
  id: string;
  score: number;
  videoId?: string;
}

describe("a plain CLIP pack end to end (real Loupe, Milvus Lite, the shipped towers only)", () => {
  let workDir: string;
  let packDir: string;
  let dataset: string;
  let llm: OpenAiTestServer;
  let loupe: RunningLoupe | undefined;
  let scenes: SceneLine[];
  let videos: VideoLine[];
  let triples: TripleLine[];
  const imageIds = new Map<string, string>();

  const start = async (env: Record<string, string> = {}): Promise<RunningLoupe> =>
    startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: path.join(workDir, "data"),
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_MODEL_PACK: packDir,
        LOUPE_VIDEO_SAMPLE_FPS: "2",
        LOUPE_OCR: "off",
        ...env,
      },
      cwd: root,
      logger: createLogger({ level: "silent" }),
    });

  const post = async (pathname: string, body: unknown): Promise<Response> => {
    if (loupe === undefined) throw new Error("Loupe is not running");
    return fetch(`${loupe.url}${pathname}`, {
      method: "POST",
      ...(body instanceof FormData
        ? { body }
        : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    });
  };

  const json = async <T>(response: Response, status = 200): Promise<T> => {
    const text = await response.text();
    expect(response.status, text).toBe(status);
    return JSON.parse(text) as T;
  };

  const fileBlob = async (file: string, type: string): Promise<Blob> =>
    new Blob([new Uint8Array(await readFile(path.join(dataset, file)))], { type });

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-plain-"));
    packDir = await makePlainPack({ dir: path.join(workDir, "clip-plain") });
    dataset = path.join(workDir, "synth");
    await generateDataset({
      outDir: dataset,
      seed: 23,
      images: 24,
      size: 128,
      format: "png",
      questionsPerType: 1,
      triples: 4,
      videos: 1,
      videoSize: 128,
    });
    scenes = await readJsonl<SceneLine>(path.join(dataset, "scenes.jsonl"));
    videos = await readJsonl<VideoLine>(path.join(dataset, "videos.jsonl"));
    triples = await readJsonl<TripleLine>(path.join(dataset, "triples.jsonl"));
    llm = await startOpenAiTestServer();
    loupe = await start();
  }, 180_000);

  afterAll(async () => {
    await loupe?.stop();
    await llm?.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("ingests images, a video and triples", async () => {
    const form = new FormData();
    for (const scene of scenes)
      form.append("files", await fileBlob(scene.file, "image/png"), `${scene.id}.png`);
    const images = await json<{ items: { status: string; id: string; filename: string }[] }>(
      await post("/v1/images", form),
    );
    expect(images.items.map((item) => item.status)).toEqual(scenes.map(() => "stored"));
    for (const item of images.items) imageIds.set(item.filename.replace(/\.png$/, ""), item.id);

    const video = videos[0];
    if (video === undefined) throw new Error("no video generated");
    const videoForm = new FormData();
    videoForm.append("file", await fileBlob(video.file, "video/mp4"), "clip.mp4");
    const stored = await json<{ items: { status: string; id: string; segments?: unknown[] }[] }>(
      await post("/v1/videos", videoForm),
    );
    expect(stored.items[0]?.status).toBe("stored");

    const items = [];
    for (const triple of triples) {
      const bytes = await readFile(path.join(dataset, triple.file));
      items.push({
        image: bytes.toString("base64"),
        question: triple.question,
        answer: triple.answer,
      });
    }
    const stored3 = await json<{ items: { status: string }[] }>(await post("/v1/triples", { items }));
    expect(stored3.items.map((item) => item.status)).toEqual(triples.map(() => "stored"));
  });

  it("search finds described images and the video's segments", async () => {
    let hits = 0;
    for (const scene of scenes.slice(0, 12)) {
      const query = scene.descriptions[0]?.text ?? "";
      const { items } = await json<{ items: ResultItem[] }>(
        await post("/v1/search", { text: query, kinds: ["image"], topK: 10 }),
      );
      if (items.some((item) => item.id === imageIds.get(scene.id))) hits += 1;
    }
    // The towers are the shipped pack's, so full descriptions find their scene among 24 most of the time.
    expect(hits).toBeGreaterThanOrEqual(9);

    const segment = videos[0]?.segments[0];
    const { items } = await json<{ items: ResultItem[] }>(
      await post("/v1/search", {
        text: segment?.descriptions[0]?.text ?? "",
        kinds: ["video_segment"],
        topK: 5,
      }),
    );
    expect(items.length).toBeGreaterThan(0);
    expect(items.every((item) => item.kind === "video_segment")).toBe(true);
  });

  it("similar and classify answer", async () => {
    const first = imageIds.get(scenes[0]?.id ?? "");
    if (first === undefined) throw new Error("no stored image");
    const similar = await json<{ items: ResultItem[] }>(await post(`/v1/similar/${first}`, { topK: 5 }));
    expect(similar.items.length).toBeGreaterThan(0);
    expect(similar.items.some((item) => item.id === first)).toBe(false);

    const classify = await json<{ labels: { label: string; score: number }[] }>(
      await post("/v1/classify", {
        image: first,
        labels: ["a red object", "a blue object", "a green object"],
      }),
    );
    expect(classify.labels).toHaveLength(3);
    const total = classify.labels.reduce((sum, label) => sum + label.score, 0);
    expect(total).toBeCloseTo(1, 5);
  });

  it("/v1/vqa answers 503 naming the missing head", async () => {
    const first = imageIds.get(scenes[0]?.id ?? "");
    const response = await post("/v1/vqa", { image: first, question: "what color is the circle?" });
    const body = await json<{ error: { code: string; message: string } }>(response, 503);
    expect(body.error.code).toBe("not_ready");
    expect(body.error.message).toContain("clip-plain has no VQA head");
    expect(body.error.message).toContain("onnx/meter_vqa.onnx");
  });

  it("chat without an LLM answers from retrieval and says what it cannot do", async () => {
    const question = scenes[1]?.descriptions[0]?.text ?? "";
    const body = await json<{ answer: string; citations: { id: string }[] }>(
      await post("/v1/chat", { question: `Show me ${question}` }),
    );
    expect(body.citations.length).toBeGreaterThan(0);
    expect(body.answer).toContain("by similarity alone (not checked)");

    // About an attached image, it says it cannot tell what the image shows instead of guessing.
    const image = (await readFile(path.join(dataset, scenes[3]?.file ?? ""))).toString("base64");
    const attached = await json<{ answer: string }>(
      await post("/v1/chat", { question: "What color is the circle?", images: [image] }),
    );
    expect(attached.answer).toContain(
      "has no VQA head, so without an LLM Loupe cannot tell what an image shows",
    );
  });

  it("after a restart with an LLM, chat answers from retrieved evidence and the images", async () => {
    await loupe?.stop();
    loupe = await start({
      LOUPE_LLM_MODEL: "loupe-test-model",
      OPENAI_BASE_URL: llm.url,
      OPENAI_API_KEY: "test-key",
      LOUPE_LLM_VISION: "true",
    });
    llm.reset();
    let citedId = "";
    llm.setDefault((request) => {
      const prompt = (request.body?.messages ?? []).map((message) => messageText(message)).join("\n");
      citedId = /img_[0-9a-f]{32}/.exec(prompt)?.[0] ?? "";
      return { text: `It is the first result [${citedId}].` };
    });
    const question = scenes[2]?.descriptions[0]?.text ?? "";
    const body = await json<{ answer: string; citations: { id: string }[] }>(
      await post("/v1/chat", { question: `Which picture shows ${question}?` }),
    );
    expect(llm.chatRequests.length).toBeGreaterThan(0);
    const sent = llm.chatRequests[0]?.body?.messages ?? [];
    const promptText = sent.map((message) => messageText(message)).join("\n");
    // The evidence went in; with LOUPE_LLM_VISION the images went in too.
    expect(promptText).toContain(imageIds.get(scenes[2]?.id ?? "") ?? "missing id");
    expect(
      sent.some(
        (message) =>
          Array.isArray(message.content) && message.content.some((part) => part.type === "image_url"),
      ),
    ).toBe(true);
    expect(citedId).not.toBe("");
    expect(body.answer).toContain(`first result [${citedId}]`);
    expect(body.citations.map((citation) => citation.id)).toContain(citedId);
  });
});
