/**
 * `npm run bench:scale [-- options]`: how Loupe scales out by processes, on a fresh PostgreSQL database
 * (made for the run and dropped after), a Redis database (Loupe's keys there cleared before and after) and
 * one embedded Milvus Lite shared by every process, as several hosts would share a Milvus server.
 *
 * (a) Ingest: for each `--workers` count, that many `loupe serve --role worker` child processes run an
 * image job of `--images` rendered Shapes World images uploaded in one request (`?async=true`) to a
 * separate `loupe serve --role api` process; items/s is the job's size over the time from the upload's
 * start to the job's `done` (each level ingests images of its own, so none is skipped).
 * (b) API: for each `--replicas` count, that many `--role api` processes over the corpus (a) stored, driven
 * by `--concurrency` clients for `--seconds` (spread evenly over the replicas, as a round-robin load
 * balancer would) sending `--weights` (search by text and offline chat by default; see `load-driver.ts`).
 *
 * Every process runs the working tree's code (`node --import tsx src/cli/main.ts`), authentication and
 * rate limits off. The table gives the CPU count and the load average: on a machine with 2 cores the
 * processes share those cores, so little gain is expected from a second worker or replica there; the
 * figures show the cost per process and whether a second one adds or takes away, not what more machines
 * would give.
 *
 * Options: --workers <n,n,…> (default 1,2), --replicas <n,n,…> (default 1,2), --images <n> per ingest level
 * (default 300), --size <px> of the images (default 128), --seconds <s> per API level (default 15),
 * --warmup <s> (default 3), --concurrency <n> clients (default 8), --weights search-text=80,chat=20,
 * --postgres <url> of the maintenance database (default LOUPE_TEST_POSTGRES_URL or
 * postgres://postgres@127.0.0.1:5432/postgres), --redis <url> with its database (default
 * redis://127.0.0.1:6379/13), --pack <dir>.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import pg from "pg";
import { createDatabasePool } from "../src/db/database.ts";
import { migrate } from "../src/db/migrate.ts";
import { startMilvusLite } from "../src/store/milvus-lite.ts";
import { createRng, deriveSeed, renderScene, type Scene, sampleScene } from "../src/synth/index.ts";
import { ROOT } from "./bench-loupe.ts";
import {
  driveLoad,
  formatSummary,
  parseWeights,
  resolvePack,
  rssOf,
  type ServerUnderTest,
  summarize,
  type Workload,
} from "./load-driver.ts";

const { values: args } = parseArgs({
  options: {
    workers: { type: "string", default: "1,2" },
    replicas: { type: "string", default: "1,2" },
    images: { type: "string", default: "300" },
    size: { type: "string", default: "128" },
    seconds: { type: "string", default: "15" },
    warmup: { type: "string", default: "3" },
    concurrency: { type: "string", default: "8" },
    weights: { type: "string", default: "search-text=80,chat=20" },
    postgres: { type: "string" },
    redis: { type: "string", default: "redis://127.0.0.1:6379/13" },
    pack: { type: "string" },
  },
});

function counts(option: string, text: string | undefined): number[] {
  const values = (text ?? "").split(",").map((part) => Number(part));
  if (values.length === 0 || values.some((value) => !Number.isInteger(value) || value < 1 || value > 16)) {
    throw new Error(`--${option} "${text}" is not a list of whole numbers 1–16, e.g. 1,2.`);
  }
  return values;
}

const workerLevels = counts("workers", args.workers);
const replicaLevels = counts("replicas", args.replicas);
const imageCount = Number(args.images);
const imageSize = Number(args.size);
const seconds = Number(args.seconds);
const warmup = Number(args.warmup);
const concurrency = Number(args.concurrency);
if (
  !(Number.isInteger(imageCount) && imageCount >= 10) ||
  !(Number.isInteger(imageSize) && imageSize >= 32 && imageSize <= 1024) ||
  !(seconds > 0) ||
  !(warmup >= 0) ||
  !(Number.isInteger(concurrency) && concurrency >= 1)
) {
  throw new Error(
    `--images ${args.images}, --size ${args.size}, --seconds ${args.seconds}, --warmup ${args.warmup}, --concurrency ${args.concurrency}: allowed are --images ≥ 10, --size 32–1024, --seconds > 0, --warmup ≥ 0, --concurrency ≥ 1.`,
  );
}
// Kinds the text does not name are not sent (the load driver's defaults would add image search and ingest).
const named = new Set((args.weights ?? "").split(",").map((part) => part.split("=")[0]));
const weights = Object.fromEntries(
  Object.entries(parseWeights(args.weights)).map(([kind, weight]) => [kind, named.has(kind) ? weight : 0]),
) as ReturnType<typeof parseWeights>;
if (weights["search-image"] > 0 || weights["ingest-image"] > 0) {
  throw new Error(
    `--weights ${args.weights}: this bench sends search-text, chat and chat-stream only (images are ingested in part a).`,
  );
}
const packDir = resolvePack(args.pack);
const adminUrl =
  args.postgres ?? process.env.LOUPE_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const redisUrl = args.redis ?? "redis://127.0.0.1:6379/13";
const log = (line: string) => process.stdout.write(`${line}\n`);
const load = () =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");

/** Runs `work` on a client of the maintenance database. */
async function admin(work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
  await client.connect().catch((error: unknown) => {
    throw new Error(
      `PostgreSQL does not answer at ${new URL(adminUrl).host} (${(error as Error).message}); start it or pass --postgres <url>.`,
      { cause: error },
    );
  });
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

/** Deletes Loupe's keys (job queue, rate buckets, leases) from the bench's Redis database. */
async function clearRedis(): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
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

/** A `loupe serve --role <role>` child process of the working tree. */
interface LoupeProcess {
  pid: number;
  baseUrl?: string;
  stop(): Promise<void>;
}

let portCounter = 0;

/** Starts `loupe serve --role <role>` and resolves once it listens (api) or runs jobs (worker). */
function startProcess({
  role,
  env,
}: {
  role: "api" | "worker";
  env: Record<string, string>;
}): Promise<LoupeProcess> {
  const childEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("LOUPE_") && key !== "MILVUS_ADDRESS") childEnv[key] = value;
  }
  Object.assign(childEnv, env, { LOUPE_LOG_LEVEL: "info" });
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), "serve", "--role", role],
    { cwd: ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] },
  );
  const label = `${role} ${++portCounter}`;
  let output = "";
  const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    }
  };
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`${label} did not start within 120 s:\n${output.slice(-4000)}`));
    }, 120_000);
    const onData = (chunk: string) => {
      output = (output + chunk).slice(-20_000);
      const ready =
        role === "worker"
          ? output.includes("loupe worker is running shared ingest jobs")
          : /"url":"(http:\/\/[^"]+)"[^\n]*loupe is listening/.exec(output);
      if (ready) {
        clearTimeout(timer);
        child.stdout?.removeAllListeners("data");
        child.stderr?.removeAllListeners("data");
        child.stdout?.resume();
        child.stderr?.resume();
        resolveStart({
          pid: child.pid as number,
          ...(typeof ready === "object" && ready !== null ? { baseUrl: ready[1] as string } : {}),
          stop,
        });
      }
    };
    child.stdout?.setEncoding("utf8").on("data", onData);
    child.stderr?.setEncoding("utf8").on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code ?? signal}) while starting:\n${output.slice(-4000)}`));
    });
  });
}

/** Renders `count` Shapes World scenes of seed `seed`, as JPEG bytes with their scenes. */
async function renderImages(
  seed: number,
  count: number,
): Promise<Array<{ scene: Scene; bytes: Uint8Array }>> {
  return Promise.all(
    Array.from({ length: count }, async (_, index) => {
      const scene = sampleScene(createRng(deriveSeed(seed, "scene", index)));
      const rendered = await renderScene(scene, {
        size: imageSize,
        format: "jpeg",
        seed: deriveSeed(seed, "render", index),
      });
      return { scene, bytes: new Uint8Array(rendered.data) };
    }),
  );
}

interface JobBody {
  job: {
    id: string;
    status: string;
    counts: { total: number; done: number; skipped: number; failed: number };
  };
}

/** Uploads the images as one job through `api` and waits for it to end; seconds from the upload's start. */
async function runJob(
  api: string,
  images: ReadonlyArray<{ bytes: Uint8Array }>,
): Promise<{
  seconds: number;
  counts: JobBody["job"]["counts"];
  status: string;
}> {
  const form = new FormData();
  for (const [index, image] of images.entries()) {
    form.append(
      "files",
      new Blob([new Uint8Array(image.bytes)], { type: "image/jpeg" }),
      `scale-${index}.jpg`,
    );
  }
  const started = performance.now();
  const accepted = await fetch(`${api}/v1/images?async=true`, { method: "POST", body: form });
  const body = (await accepted.json()) as JobBody;
  if (accepted.status !== 202)
    throw new Error(`the upload was answered ${accepted.status}: ${JSON.stringify(body)}`);
  const deadline = Date.now() + 600_000;
  for (;;) {
    const response = await fetch(`${api}/v1/jobs/${body.job.id}`);
    const { job } = (await response.json()) as JobBody;
    if (job.status === "done" || job.status === "failed" || Date.now() > deadline) {
      return { seconds: (performance.now() - started) / 1000, counts: job.counts, status: job.status };
    }
    await new Promise((wait) => setTimeout(wait, 200));
  }
}

function coloredShapes(scene: Scene): string[] {
  return [...new Set(scene.objects.map((object) => `${object.color} ${object.shape}`))];
}

const cpus = availableParallelism();
log(
  `bench:scale: ${cpus} CPUs, load average ${load()}; workers ${workerLevels.join(", ")} on ${imageCount} images of ${imageSize} px; API replicas ${replicaLevels.join(", ")} × ${seconds} s (+${warmup} s warm-up), ${concurrency} clients, weights ${JSON.stringify(weights)}`,
);
if (cpus <= 2) {
  log(
    `Note: this machine has ${cpus} CPUs, shared by every process of the run (and Milvus Lite, PostgreSQL, Redis and the clients), so little gain is expected from a second worker or replica here.`,
  );
}

const databaseName = `loupe_bench_${randomBytes(6).toString("hex")}`;
const scratch = await mkdtemp(join(tmpdir(), "loupe-scale-"));
const processes: LoupeProcess[] = [];
let milvus: Awaited<ReturnType<typeof startMilvusLite>> | undefined;
const ingestRows: string[] = [];
const apiRows: string[] = [];
const details: string[] = [];
try {
  await admin((client) => client.query(`create database ${databaseName}`));
  const databaseUrl = new URL(adminUrl);
  databaseUrl.pathname = `/${databaseName}`;
  const pool = createDatabasePool({ url: databaseUrl.toString() });
  await migrate({ pool });
  await pool.end();
  await clearRedis();
  milvus = await startMilvusLite({ dataDir: join(scratch, "milvus"), venvDir: join(ROOT, ".venv") });
  const env: Record<string, string> = {
    PORT: "0",
    HOST: "127.0.0.1",
    LOUPE_DATA_DIR: join(scratch, "data"),
    LOUPE_MODEL_PACK: packDir,
    LOUPE_VENV_DIR: join(ROOT, ".venv"),
    LOUPE_DATABASE_URL: databaseUrl.toString(),
    LOUPE_REDIS_URL: redisUrl,
    MILVUS_ADDRESS: milvus.address,
    LOUPE_COLLECTION_PREFIX: "loupe_scale_",
    LOUPE_KEY_SECRET: randomBytes(32).toString("base64"),
    LOUPE_AUTH: "none",
    LOUPE_RATE_LIMIT_PER_SECOND: "0",
    LOUPE_MAX_ITEMS_PER_REQUEST: "100000",
    LOUPE_MAX_UPLOAD_BYTES: String(1024 * 1024 * 1024),
    LOUPE_BLOB_GC_AT_START: "off",
    LOUPE_METRICS: "off",
  };
  const apis: LoupeProcess[] = [];
  const startApi = async () => {
    const api = await startProcess({ role: "api", env });
    processes.push(api);
    apis.push(api);
    return api;
  };
  const firstApi = await startApi();
  const corpus: Scene[] = [];

  // (a) Ingest by 1, 2, … workers.
  for (const [level, workers] of workerLevels.entries()) {
    const images = await renderImages(1000 + level, imageCount);
    corpus.push(...images.map((image) => image.scene));
    const started = await Promise.all(
      Array.from({ length: workers }, () => startProcess({ role: "worker", env })),
    );
    processes.push(...started);
    const before = load();
    const job = await runJob(firstApi.baseUrl as string, images);
    const rss = await Promise.all(started.map((worker) => rssOf(worker.pid)));
    const perSecond = imageCount / job.seconds;
    ingestRows.push(
      `| ${workers} | ${imageCount} | ${job.seconds.toFixed(1)} | ${perSecond.toFixed(1)} | ${(perSecond / workers).toFixed(1)} | ${job.status} (done ${job.counts.done}, skipped ${job.counts.skipped}, failed ${job.counts.failed}) | ${before} → ${load()} | ${rss.map((value) => value.toFixed(0)).join(", ")} |`,
    );
    log(
      `ingest: ${workers} worker(s): ${imageCount} images in ${job.seconds.toFixed(1)} s (${perSecond.toFixed(1)}/s)`,
    );
    for (const worker of started) {
      await worker.stop();
      processes.splice(processes.indexOf(worker), 1);
    }
  }

  // (b) Requests by 1, 2, … API replicas, over the corpus (a) stored.
  const texts = corpus.slice(0, 200).map((scene) => `a ${coloredShapes(scene).join(" and a ")}`);
  const questions = corpus.slice(0, 200).map((scene, index) => {
    const shapes = coloredShapes(scene);
    return index % 2 === 0 && shapes.length >= 2
      ? `Is there an image with a ${shapes[0]} and a ${shapes[1]}?`
      : `Which images show a ${shapes[0]}?`;
  });
  const workload: Workload = { texts, questions, queryImages: [], ingestImages: [] };
  for (const replicas of replicaLevels) {
    while (apis.length < replicas) await startApi();
    const targets: ServerUnderTest[] = apis.slice(0, replicas).map((api, index) => ({
      label: `api ${index + 1}`,
      baseUrl: api.baseUrl as string,
      pid: api.pid,
      rssMiB: () => rssOf(api.pid),
      stop: api.stop,
    }));
    // Clients spread evenly: `concurrency` in all, whatever the number of replicas.
    const share = (index: number) =>
      Math.floor(concurrency / replicas) + (index < concurrency % replicas ? 1 : 0);
    const drive = (duration: number, seed: number) =>
      Promise.all(
        targets.map((server, index) =>
          share(index) === 0
            ? Promise.resolve([])
            : driveLoad({
                server,
                workload,
                concurrency: share(index),
                seconds: duration,
                weights,
                seed: seed + index,
              }),
        ),
      );
    if (warmup > 0) await drive(warmup, 99);
    const before = load();
    const samples = (await drive(seconds, replicas)).flat();
    const summary = summarize(samples, seconds);
    const all = summary.find((row) => row.kind === "all");
    const rss = await Promise.all(targets.map((target) => target.rssMiB()));
    const perSecond = all?.perSecond ?? 0;
    apiRows.push(
      `| ${replicas} | ${concurrency} | ${perSecond.toFixed(1)} | ${(perSecond / replicas).toFixed(1)} | ${all?.p50.toFixed(0)} | ${all?.p95.toFixed(0)} | ${all?.bad ?? 0} | ${before} → ${load()} | ${rss.map((value) => value.toFixed(0)).join(", ")} |`,
    );
    details.push(
      `\n### ${replicas} API replica(s), ${concurrency} clients, ${seconds} s\n`,
      formatSummary(summary),
    );
    log(`api: ${replicas} replica(s): ${perSecond.toFixed(1)} requests/s`);
  }
} finally {
  for (const child of processes.reverse()) await child.stop().catch(() => undefined);
  await milvus?.stop().catch(() => undefined);
  await admin((client) => client.query(`drop database if exists ${databaseName} with (force)`)).catch(
    (error: unknown) => log(`could not drop ${databaseName}: ${(error as Error).message}`),
  );
  await clearRedis().catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
}

log(`\n## bench:scale on ${cpus} CPUs (load average at the end ${load()})\n`);
log("### Ingest: one image job through one `--role api` process, run by `--role worker` processes\n");
log(
  "| workers | images | seconds (upload → done) | items/s | items/s per worker | job | load average (1, 5, 15 min) before → after | worker RSS MiB |",
);
log(
  "| ------: | -----: | ----------------------: | ------: | -----------------: | --- | ------------------------------------------ | -------------- |",
);
for (const row of ingestRows) log(row);
log("\n### API: requests by concurrent clients spread over `--role api` replicas\n");
log(
  "| replicas | clients | requests/s | requests/s per replica | p50 ms | p95 ms | failed | load average before → after | replica RSS MiB |",
);
log(
  "| -------: | ------: | ---------: | ---------------------: | -----: | -----: | -----: | --------------------------- | --------------- |",
);
for (const row of apiRows) log(row);
for (const line of details) log(line);
if (cpus <= 2) {
  log(
    `\nOn ${cpus} CPUs every process shares the same cores: a second worker or replica can only use what the first left idle (waits on Milvus, PostgreSQL and Redis), so expect little gain, or a loss from contention. Spread over machines, each added process brings its own cores.`,
  );
}
