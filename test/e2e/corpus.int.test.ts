/**
 * The whole ingestion and search path on one generated Shapes World corpus, through HTTP against a real
 * Loupe (`startLoupe`: embedded Milvus Lite, the bundled model pack, a temporary data dir): 300 images,
 * 5 long videos and 200 triples go in; every item is findable; text search finds described images and
 * acted clips; triples come back for a re-rendered, re-encoded image with a reworded question; and
 * re-ingesting everything adds nothing.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readModelPackInfo } from "../../src/inference/model-pack.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { createVectorStore, type RecordKind, type VectorStore } from "../../src/store/index.ts";
import { generateDataset, readJsonl } from "../../src/synth/index.ts";

const root = path.join(import.meta.dirname, "..", "..");
const IMAGE_COUNT = 300;
const VIDEO_COUNT = 5;
const TRIPLE_COUNT = 200;
const SAMPLE_FPS = 2;
/** One sampling step, in seconds: how far a segment boundary may be from its clip's. */
const STEP = 1 / SAMPLE_FPS;
const IMAGE_BATCH = 100;
const TENANT = "default";

interface SceneLine {
  id: string;
  file: string;
  descriptions: { text: string; includeSizes: boolean; key: string }[];
  key: string;
  keyWithoutSizes: string;
}

interface QueryLine {
  id: string;
  type: "partial" | "description";
  text: string;
  relevant: string[];
}

interface VideoLine {
  id: string;
  file: string;
  segments: { index: number; start: number; end: number; action: string; descriptions: { text: string }[] }[];
}

interface TripleLine {
  id: string;
  image: string;
  question: string;
  answer: string;
  file: string;
  probe: { file: string; question: string };
}

interface ItemResult {
  index: number;
  status: "pending" | "stored" | "skipped" | "failed";
  id?: string;
  filename?: string;
  error?: { code: string; message: string };
}

interface Job {
  id: string;
  status: "queued" | "running" | "done" | "failed";
  counts: { total: number; pending: number; done: number; skipped: number; failed: number };
  items: ItemResult[];
}

interface ResultItem {
  kind: string;
  id: string;
  score: number;
  videoId?: string;
  start?: number;
  end?: number;
}

/** The port of the embedded Milvus Lite, from its command line (Linux /proc), to count records directly. */
async function milvusLitePort(pid: number): Promise<number> {
  const args = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
  const port = Number(args[args.indexOf("--port") + 1]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no --port in Milvus Lite's command line`);
  return port;
}

describe("a Shapes World corpus end to end over HTTP (real Loupe, Milvus Lite, pack)", () => {
  let workDir: string;
  let dataset: string;
  let loupe: RunningLoupe;
  let counter: VectorStore;
  let scenes: SceneLine[];
  let descriptionQueries: QueryLine[];
  let videos: VideoLine[];
  let triples: TripleLine[];
  /** Dataset image id (img-000001) → record id (img_…). */
  const imageIds = new Map<string, string>();
  let videoIds: string[] = [];
  let tripleIds: string[] = [];
  /** The requests that ingested everything, to send again. */
  let imageForms: (() => Promise<FormData>)[] = [];
  let videoForm: () => Promise<FormData>;
  let tripleBody: string;

  const post = (pathname: string, body: BodyInit, json = false) =>
    fetch(`${loupe.url}${pathname}`, {
      method: "POST",
      headers: json ? { "content-type": "application/json" } : {},
      body,
    });

  async function waitForJob(response: Response): Promise<Job> {
    const text = await response.text();
    expect(response.status, text).toBe(202);
    const { job } = JSON.parse(text) as { job: { id: string } };
    for (;;) {
      const polled = await fetch(`${loupe.url}/v1/jobs/${job.id}`);
      const snapshot = ((await polled.json()) as { job: Job }).job;
      if (snapshot.status === "done" || snapshot.status === "failed") return snapshot;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  const count = (kind: RecordKind) => counter.count({ kind, tenant: TENANT });

  async function search(body: unknown): Promise<ResultItem[]> {
    const response = await post("/v1/search", JSON.stringify(body), true);
    const json = (await response.json()) as { items: ResultItem[] };
    expect(response.status, JSON.stringify(json)).toBe(200);
    return json.items;
  }

  async function ingestImages(): Promise<Job[]> {
    const jobs: Job[] = [];
    for (const form of imageForms)
      jobs.push(await waitForJob(await post("/v1/images?async=true", await form())));
    return jobs;
  }
  const ingestVideos = async () => waitForJob(await post("/v1/videos?async=true", await videoForm()));
  const ingestTriples = async () => waitForJob(await post("/v1/triples?async=true", tripleBody, true));

  beforeAll(async () => {
    const started = performance.now();
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-e2e-"));
    dataset = path.join(workDir, "synth");
    await generateDataset({
      outDir: dataset,
      seed: 11,
      images: IMAGE_COUNT,
      size: 128,
      format: "jpeg",
      questionsPerType: 1,
      triples: TRIPLE_COUNT,
      videos: VIDEO_COUNT,
      videoSize: 128,
    });
    scenes = await readJsonl<SceneLine>(path.join(dataset, "scenes.jsonl"));
    descriptionQueries = (await readJsonl<QueryLine>(path.join(dataset, "queries.jsonl"))).filter(
      (line) => line.type === "description",
    );
    videos = await readJsonl<VideoLine>(path.join(dataset, "videos.jsonl"));
    triples = await readJsonl<TripleLine>(path.join(dataset, "triples.jsonl"));
    console.info(`e2e: dataset generated in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    loupe = await startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: path.join(workDir, "data"),
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_VIDEO_SAMPLE_FPS: String(SAMPLE_FPS),
        // A bulk client finding all 505 items back at once; the rate limit has its own tests.
        LOUPE_RATE_LIMIT_PER_SECOND: "0",
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

    imageForms = [];
    for (let start = 0; start < scenes.length; start += IMAGE_BATCH) {
      const batch = scenes.slice(start, start + IMAGE_BATCH);
      imageForms.push(async () => {
        const form = new FormData();
        for (const line of batch) {
          const bytes = await readFile(path.join(dataset, line.file));
          form.append("files", new Blob([new Uint8Array(bytes)], { type: "image/jpeg" }), `${line.id}.jpg`);
        }
        form.append("metadata", JSON.stringify({ tags: ["synth"], source: "synth" }));
        return form;
      });
    }
    videoForm = async () => {
      const form = new FormData();
      for (const line of videos) {
        const bytes = await readFile(path.join(dataset, line.file));
        form.append("files", new Blob([new Uint8Array(bytes)], { type: "video/mp4" }), `${line.id}.mp4`);
      }
      return form;
    };
    const tripleItems = await Promise.all(
      triples.map(async (line) => ({
        image: `data:image/jpeg;base64,${(await readFile(path.join(dataset, line.file))).toString("base64")}`,
        question: line.question,
        answer: line.answer,
        metadata: { tags: ["triple"], source: "synth" },
      })),
    );
    tripleBody = JSON.stringify({ items: tripleItems });
  }, 180_000);

  afterAll(async () => {
    await counter?.close();
    await loupe?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("ingests 300 images, 5 long videos and 200 triples through HTTP, every item findable", async () => {
    expect(scenes).toHaveLength(IMAGE_COUNT);
    expect(videos).toHaveLength(VIDEO_COUNT);
    expect(triples).toHaveLength(TRIPLE_COUNT);
    const started = performance.now();

    const imageJobs = await ingestImages();
    const imageItems = imageJobs.flatMap((job) => job.items);
    expect(imageJobs.map((job) => job.status)).toEqual(imageJobs.map(() => "done"));
    expect(imageItems.map((item) => item.status)).toEqual(scenes.map(() => "stored"));
    expect(imageItems.map((item) => item.filename)).toEqual(scenes.map((line) => `${line.id}.jpg`));
    for (const [index, line] of scenes.entries()) imageIds.set(line.id, imageItems[index]?.id as string);
    const imagesDone = performance.now();

    const videoJob = await ingestVideos();
    expect(videoJob.status).toBe("done");
    expect(videoJob.items.map((item) => item.status)).toEqual(videos.map(() => "stored"));
    videoIds = videoJob.items.map((item) => item.id as string);
    const videosDone = performance.now();

    const tripleJob = await ingestTriples();
    expect(tripleJob.status).toBe("done");
    expect(tripleJob.counts).toEqual({ total: 200, pending: 0, done: 200, skipped: 0, failed: 0 });
    tripleIds = tripleJob.items.map((item) => item.id as string);
    const triplesDone = performance.now();
    console.info(
      `e2e ingest over HTTP: 300 images ${((imagesDone - started) / 1000).toFixed(1)} s, 5 videos ${((videosDone - imagesDone) / 1000).toFixed(1)} s, 200 triples ${((triplesDone - videosDone) / 1000).toFixed(1)} s`,
    );

    const clipCount = videos.reduce((sum, line) => sum + line.segments.length, 0);
    expect(new Set(imageIds.values()).size).toBe(IMAGE_COUNT);
    expect(new Set(videoIds).size).toBe(VIDEO_COUNT);
    expect(new Set(tripleIds).size).toBe(TRIPLE_COUNT);
    expect(await count("image")).toBe(IMAGE_COUNT);
    expect(await count("video_segment")).toBe(clipCount);
    expect(await count("triple")).toBe(TRIPLE_COUNT);

    // Every id answers with its media: images and triples their original, videos their file.
    const ids = [...imageIds.values(), ...videoIds, ...tripleIds];
    const statuses: number[] = [];
    for (let start = 0; start < ids.length; start += 20) {
      statuses.push(
        ...(await Promise.all(
          ids.slice(start, start + 20).map(async (id) => {
            const response = await fetch(`${loupe.url}/v1/media/${id}`);
            await response.arrayBuffer();
            return response.status;
          }),
        )),
      );
    }
    expect(statuses).toEqual(ids.map(() => 200));
    const original = await fetch(`${loupe.url}/v1/media/${imageIds.get("img-000007")}`);
    const stored = Buffer.from(await original.arrayBuffer());
    expect(stored.equals(await readFile(path.join(dataset, "images", "img-000007.jpg")))).toBe(true);
  }, 300_000);

  it("text search for a full description puts a relevant image in the top 10 (model card: R@10 0.99)", async () => {
    const byKey = new Map<string, Set<string>>();
    const add = (key: string, id: string) => byKey.set(key, (byKey.get(key) ?? new Set()).add(id));
    for (const line of scenes) {
      add(line.key, imageIds.get(line.id) as string);
      add(line.keyWithoutSizes, imageIds.get(line.id) as string);
    }
    const queries = [
      ...scenes.map((line) => {
        const description = line.descriptions[0] as SceneLine["descriptions"][number];
        return { text: description.text, relevant: byKey.get(description.key) ?? new Set<string>() };
      }),
      ...descriptionQueries.map((line) => ({
        text: line.text,
        relevant: new Set(line.relevant.map((id) => imageIds.get(id) as string)),
      })),
    ];
    let hits = 0;
    for (const query of queries) {
      const items = await search({ text: query.text, kinds: ["image"], topK: 10 });
      if (items.some((item) => query.relevant.has(item.id))) hits += 1;
    }
    const rate = hits / queries.length;
    console.info(
      `e2e text→image: a relevant image in the top 10 for ${hits}/${queries.length} full descriptions (R@10 ${rate.toFixed(3)}, gallery ${IMAGE_COUNT} images)`,
    );
    expect(rate).toBeGreaterThanOrEqual(0.95);
  });

  it("an action query finds its clip's segment, with start and end within one sampling step", async () => {
    let hits = 0;
    let total = 0;
    let boundaries = 0;
    for (const [index, line] of videos.entries()) {
      const videoId = videoIds[index] as string;
      const filter = [{ field: "video_id", op: "eq", value: videoId }];
      const all = await search({
        text: line.segments[0]?.action,
        kinds: ["video_segment"],
        topK: 100,
        filter,
      });
      expect(all.every((item) => item.videoId === videoId)).toBe(true);
      // Every clip's start is a segment's start, and its end a segment's end, within one step.
      for (const clip of line.segments) {
        const starts = all.some((item) => Math.abs((item.start ?? -1) - clip.start) <= STEP);
        const ends = all.some((item) => Math.abs((item.end ?? -1) - clip.end) <= STEP);
        expect(starts, `${line.id}: no segment starts within ${STEP} s of ${clip.start} s`).toBe(true);
        expect(ends, `${line.id}: no segment ends within ${STEP} s of ${clip.end} s`).toBe(true);
        boundaries += 2;
      }
      for (const clip of line.segments) {
        for (const description of clip.descriptions) {
          const [best] = await search({ text: description.text, kinds: ["video_segment"], topK: 1, filter });
          total += 1;
          if (
            best !== undefined &&
            Math.abs((best.start ?? -1) - clip.start) <= STEP &&
            Math.abs((best.end ?? -1) - clip.end) <= STEP
          ) {
            hits += 1;
          }
        }
      }
    }
    const rate = hits / total;
    console.info(
      `e2e action→segment: top segment within ${STEP} s of its clip's start and end for ${hits}/${total} queries (${rate.toFixed(3)}); ${boundaries} clip boundaries all matched`,
    );
    expect(rate).toBeGreaterThanOrEqual(0.8);
  });

  it("a triple comes back for a re-encoded copy of its image's twin with a reworded question", async () => {
    let found = 0;
    for (const [index, line] of triples.entries()) {
      const twin = await readFile(path.join(dataset, line.probe.file));
      const reencoded = await sharp(twin).jpeg({ quality: 70 }).toBuffer();
      const items = await search({
        text: line.probe.question,
        image: reencoded.toString("base64"),
        kinds: ["triple"],
        topK: 5,
      });
      if (items.some((item) => item.id === tripleIds[index])) found += 1;
    }
    const rate = found / triples.length;
    console.info(
      `e2e triples: stored triple in the top 5 for ${found}/${triples.length} probes (${rate.toFixed(3)})`,
    );
    expect(rate).toBeGreaterThanOrEqual(0.9);
  });

  it("re-ingesting everything adds zero records", async () => {
    const before = {
      image: await count("image"),
      video_segment: await count("video_segment"),
      triple: await count("triple"),
    };
    const imageJobs = await ingestImages();
    const imageItems = imageJobs.flatMap((job) => job.items);
    expect(imageItems.map((item) => item.status)).toEqual(scenes.map(() => "skipped"));
    expect(imageItems.map((item) => item.id)).toEqual([...imageIds.values()]);
    const videoJob = await ingestVideos();
    expect(videoJob.items.map((item) => item.status)).toEqual(videos.map(() => "skipped"));
    expect(videoJob.items.map((item) => item.id)).toEqual(videoIds);
    const tripleJob = await ingestTriples();
    expect(tripleJob.counts).toEqual({ total: 200, pending: 0, done: 0, skipped: 200, failed: 0 });
    expect(tripleJob.items.map((item) => item.id)).toEqual(tripleIds);
    expect({
      image: await count("image"),
      video_segment: await count("video_segment"),
      triple: await count("triple"),
    }).toEqual(before);
  }, 180_000);
});
