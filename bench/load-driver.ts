/**
 * What `bench:load` and `bench:soak` share: a seeded data directory, a real `loupe serve` child process
 * over a copy of it, and N clients sending a weighted mix of requests for a while, with per-route
 * latency, status counts and the server's resident memory.
 *
 * Seeding (the fast, honest path): `--scenes` Shapes World scenes are rendered (256 px JPEG), stored as
 * blobs and embedded with the pack's vision tower; the corpus is those vectors plus Gaussian-jittered
 * copies (σ 0.02 per dimension, re-normalized) up to `--items`, 90 % image records and 10 % triples, each
 * with its own id and metadata and pointing at the blob of the scene it was copied from, so grounding reads
 * and decodes a real image whichever record it retrieves. They are written straight into the store of the
 * data directory (an embedded Milvus Lite started for the seeding, the collection prefix and tenant the
 * server uses) and flushed, then Milvus Lite is stopped. Each server under test gets its own copy of that
 * directory, so a baseline checkout and this one serve the same corpus.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseConfig } from "../src/config.ts";
import { loadModelPack } from "../src/inference/model-pack.ts";
import { blobRef, createFsBlobStore } from "../src/media/blob-store.ts";
import { findFreePort } from "../src/store/free-port.ts";
import {
  collectionName,
  createMilvusClient,
  createVectorStore,
  type ImageRecord,
  RECORD_KINDS,
  type TripleRecord,
} from "../src/store/index.ts";
import { startMilvusLite } from "../src/store/milvus-lite.ts";
import {
  createRng,
  deriveSeed,
  generateQuestions,
  type Question,
  renderScene,
  type Scene,
  sampleScene,
} from "../src/synth/index.ts";
import { jittered, ROOT } from "./bench-loupe.ts";

/** The kinds of request the clients send. */
export const REQUEST_KINDS = ["search-text", "search-image", "chat", "chat-stream", "ingest-image"] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

/** Default weights of the mix: mostly searches, some chat, a little ingest. */
export const DEFAULT_WEIGHTS: Record<RequestKind, number> = {
  "search-text": 40,
  "search-image": 15,
  chat: 20,
  "chat-stream": 10,
  "ingest-image": 15,
};

/** Parses `search-text=40,chat=20,…` over the defaults. */
export function parseWeights(text: string | undefined): Record<RequestKind, number> {
  const weights = { ...DEFAULT_WEIGHTS };
  if (text === undefined || text.length === 0) return weights;
  for (const part of text.split(",")) {
    const [name, value] = part.split("=");
    if (!REQUEST_KINDS.includes(name as RequestKind) || !(Number(value) >= 0)) {
      throw new Error(
        `--weights: "${part}" is not <kind>=<number ≥ 0>; kinds are ${REQUEST_KINDS.join(", ")}.`,
      );
    }
    weights[name as RequestKind] = Number(value);
  }
  return weights;
}

/** What the clients send: query texts, query images, chat questions and fresh images to ingest. */
export interface Workload {
  texts: string[];
  queryImages: Uint8Array[];
  questions: string[];
  ingestImages: Uint8Array[];
}

const TENANT_ENV = "LOUPE_DEFAULT_TENANT";

function benchId(prefix: string, index: number): string {
  return `${prefix}_${createHash("sha256").update(`bench-load:${prefix}:${index}`).digest("hex").slice(0, 32)}`;
}

function coloredShapes(scene: Scene): string[] {
  return [...new Set(scene.objects.map((object) => `${object.color} ${object.shape}`))];
}

/**
 * Seeds `dir` as a Loupe data directory with `items` records (see the module comment) and returns the
 * workload drawn from the same scenes.
 */
export async function seedDataDir({
  dir,
  items,
  scenes: sceneCount,
  packDir,
  log,
}: {
  dir: string;
  items: number;
  scenes: number;
  packDir: string;
  log: (line: string) => void;
}): Promise<Workload> {
  const started = performance.now();
  const config = parseConfig({ env: { LOUPE_DATA_DIR: dir, LOUPE_MODEL_PACK: packDir }, cwd: ROOT });
  const tenant = process.env[TENANT_ENV] ?? config.defaultTenant;
  const milvus = await startMilvusLite({ dataDir: join(dir, "milvus"), venvDir: join(ROOT, ".venv") });
  const models = await loadModelPack({ dir: packDir, sessionOptions: { intraOpNumThreads: 0 } });
  const store = await createVectorStore({
    address: milvus.address,
    dimension: models.dimension,
    collectionPrefix: config.collectionPrefix,
  });
  const blobs = createFsBlobStore({ dir: join(dir, "blobs") });
  try {
    const rng = createRng(4242);
    const scenes = Array.from({ length: sceneCount }, (_, index) => sampleScene(rng.fork("scene", index)));
    const sceneBytes = await Promise.all(
      scenes.map(
        async (scene, index) =>
          new Uint8Array(
            (await renderScene(scene, { size: 256, format: "jpeg", seed: deriveSeed(4242, "render", index) }))
              .data,
          ),
      ),
    );
    const refs = await Promise.all(
      sceneBytes.map(async (bytes) =>
        blobRef((await blobs.put({ bytes, contentType: "image/jpeg" })).sha256),
      ),
    );
    const vectors = await models.imageEmbedder.embed({ images: sceneBytes });
    const questions: Question[] = scenes
      .map((scene, index) => generateQuestions(scene, rng.fork("triple", index), { types: ["exist"] })[0])
      .filter((question): question is Question => question !== undefined);
    const questionVectors = await models.textEmbedder.embed({ texts: questions.map((q) => q.question) });
    const random = () => rng.next();
    const imageCount = Math.round(items * 0.9);
    const tripleCount = items - imageCount;
    const images: ImageRecord[] = Array.from({ length: imageCount }, (_, index) => {
      const source = index % sceneCount;
      const base = vectors[source] as Float32Array;
      return {
        id: benchId("img", index),
        modelId: models.modelId,
        mediaRef: refs[source] as string,
        source: "bench",
        metadata: { tags: ["synth", `batch-${index % 10}`], scene: source },
        vector: index < sceneCount ? base : jittered({ base, sigma: 0.02, random }),
      };
    });
    const triples: TripleRecord[] = Array.from({ length: tripleCount }, (_, index) => {
      const source = index % questions.length;
      const question = questions[source] as Question;
      return {
        id: benchId("tri", index),
        modelId: models.modelId,
        mediaRef: refs[source] as string,
        source: "bench",
        text: `${question.question}\n${question.answer}`,
        metadata: { tags: ["synth"] },
        question: question.question,
        answer: question.answer,
        imageVector: jittered({ base: vectors[source] as Float32Array, sigma: 0.02, random }),
        questionVector: questionVectors[source] as Float32Array,
      };
    });
    for (let start = 0; start < images.length; start += 2000) {
      await store.upsert({ kind: "image", tenant, records: images.slice(start, start + 2000) });
    }
    for (let start = 0; start < triples.length; start += 2000) {
      await store.upsert({ kind: "triple", tenant, records: triples.slice(start, start + 2000) });
    }
    const client = createMilvusClient({ address: milvus.address });
    try {
      await client.flushSync({
        collection_names: RECORD_KINDS.map((kind) =>
          collectionName({ prefix: config.collectionPrefix, kind }),
        ),
      });
    } finally {
      await client.closeConnection();
    }
    const counted = await store.count({ kind: "image", tenant });
    if (counted !== imageCount)
      throw new Error(`seeded ${imageCount} images but the store counts ${counted}`);

    // The workload: descriptions and corpus questions of the scenes, query images, fresh scenes to ingest.
    const texts = scenes.slice(0, 200).map((scene) => `a ${coloredShapes(scene).join(" and a ")}`);
    const chatQuestions = scenes.slice(0, 200).map((scene, index) => {
      const shapes = coloredShapes(scene);
      return index % 2 === 0 && shapes.length >= 2
        ? `Is there an image with a ${shapes[0]} and a ${shapes[1]}?`
        : `Which images show a ${shapes[0]}?`;
    });
    const ingestRng = createRng(777);
    const ingestImages = await Promise.all(
      Array.from({ length: 600 }, async (_, index) => {
        const scene = sampleScene(ingestRng.fork("ingest", index));
        return new Uint8Array(
          (await renderScene(scene, { size: 128, format: "jpeg", seed: deriveSeed(777, "ingest", index) }))
            .data,
        );
      }),
    );
    log(
      `seeded ${items} items (${imageCount} images, ${tripleCount} triples over ${sceneCount} rendered scenes) in ${(
        (performance.now() - started) / 1000
      ).toFixed(1)} s`,
    );
    return {
      texts,
      queryImages: sceneBytes.slice(0, 100),
      questions: chatQuestions,
      ingestImages,
    };
  } finally {
    await store.close();
    await models.close();
    await milvus.stop();
  }
}

/** A `loupe serve` child process over its own copy of the seeded data. */
export interface ServerUnderTest {
  label: string;
  baseUrl: string;
  pid: number;
  /** Resident memory of the server process (not its Milvus Lite child), in MiB. */
  rssMiB(): Promise<number>;
  stop(): Promise<void>;
}

/** Resident memory of a process from /proc, in MiB (0 where /proc is not there). */
export async function rssOf(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(status);
    return match === null ? 0 : Number(match[1]) / 1024;
  } catch {
    return 0;
  }
}

/**
 * Starts `node <checkout>/bin/loupe.js serve` on a free port over a copy of `seedDir`, rate limit off,
 * authentication off, offline composer, and waits until `/readyz` answers 200.
 */
export async function startServer({
  label,
  checkout,
  seedDir,
  packDir,
  env = {},
  log,
}: {
  label: string;
  checkout: string;
  seedDir: string;
  packDir: string;
  env?: Record<string, string>;
  log: (line: string) => void;
}): Promise<ServerUnderTest> {
  const work = await mkdtemp(join(tmpdir(), `loupe-load-${label}-`));
  const dataDir = join(work, "data");
  await cp(seedDir, dataDir, { recursive: true });
  const port = await findFreePort();
  const childEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("LOUPE_") && key !== "MILVUS_ADDRESS") childEnv[key] = value;
  }
  Object.assign(childEnv, {
    PORT: String(port),
    HOST: "127.0.0.1",
    LOUPE_DATA_DIR: dataDir,
    LOUPE_MODEL_PACK: packDir,
    LOUPE_VENV_DIR: join(ROOT, ".venv"),
    LOUPE_RATE_LIMIT_PER_SECOND: "0",
    LOUPE_AUTH: "none",
    LOUPE_LOG_LEVEL: "warn",
    ...env,
  });
  const child: ChildProcess = spawn(process.execPath, [join(checkout, "bin", "loupe.js"), "serve"], {
    cwd: checkout,
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`${label}: loupe serve exited (${child.exitCode}):\n${output}`);
    try {
      const response = await fetch(`${baseUrl}/readyz`);
      if (response.status === 200) break;
      await response.arrayBuffer();
    } catch {}
    if (Date.now() > deadline) {
      child.kill("SIGTERM");
      throw new Error(`${label}: loupe serve was not ready within 120 s:\n${output}`);
    }
    await new Promise((wait) => setTimeout(wait, 250));
  }
  const pid = child.pid as number;
  log(`${label}: loupe serve ready at ${baseUrl} (pid ${pid}) from ${checkout}`);
  return {
    label,
    baseUrl,
    pid,
    rssMiB: () => rssOf(pid),
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** One request's outcome. */
export interface Sample {
  kind: RequestKind;
  /** Seconds since the run began, when the request ended. */
  at: number;
  ms: number;
  /** HTTP status; 0 when the request failed without an answer. */
  status: number;
  /** Whether a 503 carried `Retry-After`. */
  retryAfter: boolean;
  /** For a 200 event stream: whether it ended with `done` and no `error` event. */
  streamOk?: boolean;
  /** For a 200 JSON chat answer: the chain's step timings, in ms. */
  timings?: Record<string, number>;
  /** For a 200 JSON chat answer: whether it says some images were not checked (grounding budget spent). */
  unchecked?: boolean;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

/** Sends one request of `kind` and reads its whole answer. */
async function send({
  kind,
  baseUrl,
  workload,
  index,
}: {
  kind: RequestKind;
  baseUrl: string;
  workload: Workload;
  index: number;
}): Promise<Omit<Sample, "at" | "ms">> {
  const pick = <T>(list: readonly T[]) => list[index % list.length] as T;
  let response: Response;
  const json = (path: string, body: unknown) =>
    fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
  switch (kind) {
    case "search-text":
      response = await json("/v1/search", { text: pick(workload.texts), topK: 10 });
      break;
    case "search-image":
      response = await json("/v1/search", { image: base64(pick(workload.queryImages)), topK: 10 });
      break;
    case "chat":
      response = await json("/v1/chat", { question: pick(workload.questions), composer: "offline" });
      break;
    case "chat-stream":
      response = await json("/v1/chat", {
        question: pick(workload.questions),
        composer: "offline",
        stream: true,
      });
      break;
    case "ingest-image": {
      const form = new FormData();
      const bytes = pick(workload.ingestImages);
      form.append("files", new Blob([new Uint8Array(bytes)], { type: "image/jpeg" }), `load-${index}.jpg`);
      response = await fetch(`${baseUrl}/v1/images`, {
        method: "POST",
        body: form,
        signal: AbortSignal.timeout(120_000),
      });
      break;
    }
  }
  const text = await response.text();
  const retryAfter = response.headers.get("retry-after") !== null;
  if (kind === "chat-stream" && response.status === 200) {
    return {
      kind,
      status: response.status,
      retryAfter,
      streamOk: /event: done/.test(text) && !/event: error/.test(text),
    };
  }
  if (kind === "chat" && response.status === 200) {
    const { timings, answer } = JSON.parse(text) as { timings?: Record<string, number>; answer?: string };
    return {
      kind,
      status: response.status,
      retryAfter,
      unchecked: /Not checked within this turn's grounding budget/.test(answer ?? ""),
      ...(timings === undefined ? {} : { timings }),
    };
  }
  return { kind, status: response.status, retryAfter };
}

/** Median of each chain step over the JSON chat answers, as `embed 3 · retrieve 40 · …` (ms). */
export function chatSteps(samples: readonly Sample[]): string {
  const timed = samples.flatMap((sample) => (sample.timings === undefined ? [] : [sample.timings]));
  if (timed.length === 0) return "no chat answers";
  const steps = Object.keys(timed[0] ?? {});
  const unchecked = samples.filter((sample) => sample.unchecked === true).length;
  return `${steps
    .map((step) => {
      const values = timed.map((timings) => timings[step] ?? 0).sort((a, b) => a - b);
      return `${step} ${ms(percentile(values, 0.5))}`;
    })
    .join(
      " · ",
    )}; ${unchecked} of ${timed.length} JSON answers left images unchecked (grounding budget spent)`;
}

/** Picks a kind by weight. */
function weightedPicker(weights: Record<RequestKind, number>, random: () => number): () => RequestKind {
  const entries = REQUEST_KINDS.filter((kind) => weights[kind] > 0).map(
    (kind) => [kind, weights[kind]] as const,
  );
  const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
  if (total <= 0) throw new Error("every weight is 0; give at least one kind a weight.");
  return () => {
    let draw = random() * total;
    for (const [kind, weight] of entries) {
      draw -= weight;
      if (draw < 0) return kind;
    }
    return entries[entries.length - 1]?.[0] as RequestKind;
  };
}

/**
 * Runs `concurrency` clients against `server` for `seconds`; each sends a request of a kind drawn by
 * weight, waits for its whole answer, and sends the next (a client that gets 503 or 429 waits 50 ms
 * before its next request, as a client honouring Retry-After briefly would). `onTick` is called every
 * `tickSeconds` with the samples so far.
 */
export async function driveLoad({
  server,
  workload,
  concurrency,
  seconds,
  weights,
  seed = 1,
  onTick,
  tickSeconds = 60,
}: {
  server: ServerUnderTest;
  workload: Workload;
  concurrency: number;
  seconds: number;
  weights: Record<RequestKind, number>;
  seed?: number;
  onTick?: (samples: readonly Sample[], elapsedSeconds: number) => Promise<void> | void;
  tickSeconds?: number;
}): Promise<Sample[]> {
  const rng = createRng(seed);
  const next = weightedPicker(weights, () => rng.next());
  const samples: Sample[] = [];
  const started = performance.now();
  const endAt = started + seconds * 1000;
  let counter = 0;
  let ticker: NodeJS.Timeout | undefined;
  let ticks = 0;
  if (onTick !== undefined) {
    ticker = setInterval(() => {
      ticks += 1;
      void onTick(samples, ticks * tickSeconds);
    }, tickSeconds * 1000);
  }
  const client = async () => {
    while (performance.now() < endAt) {
      const kind = next();
      const index = counter;
      counter += 1;
      const begun = performance.now();
      let outcome: Omit<Sample, "at" | "ms">;
      try {
        outcome = await send({ kind, baseUrl: server.baseUrl, workload, index });
      } catch {
        outcome = { kind, status: 0, retryAfter: false };
      }
      const ended = performance.now();
      samples.push({ ...outcome, ms: ended - begun, at: (ended - started) / 1000 });
      if (outcome.status === 503 || outcome.status === 429) await new Promise((wait) => setTimeout(wait, 50));
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, () => client()));
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
  }
  return samples;
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Per-kind figures of a run. */
export interface KindSummary {
  kind: RequestKind | "all";
  count: number;
  perSecond: number;
  /** Latency of 2xx answers, in ms. */
  p50: number;
  p95: number;
  p99: number;
  /** Counts by status other than 2xx ("0": no answer). */
  errors: Record<string, number>;
  shed503: number;
  bare503: number;
  /** 5xx other than 503 with Retry-After, plus failed requests and broken streams. */
  bad: number;
}

/** Summarizes samples per kind and overall. */
export function summarize(samples: readonly Sample[], seconds: number): KindSummary[] {
  const groups: Array<RequestKind | "all"> = [...REQUEST_KINDS, "all"];
  return groups
    .map((kind) => {
      const own = kind === "all" ? samples : samples.filter((sample) => sample.kind === kind);
      const ok = own
        .filter((sample) => sample.status >= 200 && sample.status < 300)
        .map((sample) => sample.ms)
        .sort((a, b) => a - b);
      const errors: Record<string, number> = {};
      let shed503 = 0;
      let bare503 = 0;
      let bad = 0;
      for (const sample of own) {
        if (sample.status >= 200 && sample.status < 300) {
          if (sample.streamOk === false) {
            errors["stream-error"] = (errors["stream-error"] ?? 0) + 1;
            bad += 1;
          }
          continue;
        }
        errors[String(sample.status)] = (errors[String(sample.status)] ?? 0) + 1;
        if (sample.status === 503 && sample.retryAfter) shed503 += 1;
        else if (sample.status === 503) bare503 += 1;
        if (sample.status === 0 || (sample.status >= 500 && !(sample.status === 503 && sample.retryAfter))) {
          bad += 1;
        }
      }
      return {
        kind,
        count: own.length,
        perSecond: own.length / seconds,
        p50: percentile(ok, 0.5),
        p95: percentile(ok, 0.95),
        p99: percentile(ok, 0.99),
        errors,
        shed503,
        bare503,
        bad,
      };
    })
    .filter((summary) => summary.count > 0);
}

const ms = (value: number) =>
  Number.isNaN(value) ? "–" : value >= 100 ? value.toFixed(0) : value.toFixed(1);

/** A Markdown table of {@link summarize}'s rows. */
export function formatSummary(rows: readonly KindSummary[]): string {
  const lines = [
    "| route | requests | req/s | p50 ms | p95 ms | p99 ms | non-2xx by status | 503 + Retry-After | 503 bare | bad |",
    "| ----- | -------: | ----: | -----: | -----: | -----: | ----------------- | ----------------: | -------: | --: |",
  ];
  for (const row of rows) {
    const errors = Object.entries(row.errors)
      .map(([status, count]) => `${status}: ${count}`)
      .join(", ");
    lines.push(
      `| ${row.kind} | ${row.count} | ${row.perSecond.toFixed(2)} | ${ms(row.p50)} | ${ms(row.p95)} | ${ms(
        row.p99,
      )} | ${errors || "none"} | ${row.shed503} | ${row.bare503} | ${row.bad} |`,
    );
  }
  return lines.join("\n");
}

/** Resolves the bundled pack, or `--pack`. */
export function resolvePack(pack: string | undefined): string {
  return resolve(pack ?? process.env.LOUPE_MODEL_PACK ?? join(ROOT, "models", "shapes-world-tiny"));
}

/** Creates the temporary seed directory. */
export async function seedDirectory(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "loupe-load-seed-"));
  await mkdir(join(dir, "data"), { recursive: true });
  return join(dir, "data");
}
