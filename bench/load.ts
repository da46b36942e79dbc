/**
 * `npm run bench:load [-- options]`: latency and shedding of a real `loupe serve` under concurrent mixed
 * traffic. The bench seeds a data directory (see `load-driver.ts`), starts the server as a child process
 * (rate limit off, authentication off, offline composer) over a copy of it, and for each concurrency level
 * runs that many clients for `--seconds`, each sending search by text, search by image, chat (JSON and
 * event stream) and single-image ingests by weight. It prints per route requests/s, p50/p95/p99 of 2xx
 * answers, non-2xx answers by status (503 with and without `Retry-After` apart) and the server's resident
 * memory at start and end of each level.
 *
 * With `--baseline <dir>` (another built checkout of Loupe, with node_modules) the same load runs against
 * it too, levels alternating between the two servers, so before and after meet the same machine.
 *
 * Options: --concurrency <n,n,…> (default 8,32), --seconds <s> per level (default 60), --items <n>
 * (default 10000), --scenes <n> rendered scenes behind them (default 300), --weights
 * search-text=40,search-image=15,chat=20,chat-stream=10,ingest-image=15, --baseline <dir>, --pack <dir>,
 * --warmup <s> of load before each level, not counted (default 5), --env KEY=VALUE,… for this checkout's
 * server, --checkout <dir> to serve another built checkout than this one as "this" (e.g. a worktree of a
 * commit, so the shared working tree's unfinished edits stay out of the figures).
 */
import { rm } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "./bench-loupe.ts";
import {
  chatSteps,
  driveLoad,
  formatSummary,
  parseWeights,
  resolvePack,
  type ServerUnderTest,
  seedDataDir,
  seedDirectory,
  startServer,
  summarize,
} from "./load-driver.ts";

const { values: args } = parseArgs({
  options: {
    concurrency: { type: "string", default: "8,32" },
    seconds: { type: "string", default: "60" },
    items: { type: "string", default: "10000" },
    scenes: { type: "string", default: "300" },
    weights: { type: "string" },
    baseline: { type: "string" },
    pack: { type: "string" },
    checkout: { type: "string" },
    warmup: { type: "string", default: "5" },
    env: { type: "string" },
  },
});

const levels = (args.concurrency ?? "8,32").split(",").map((part) => Number.parseInt(part, 10));
const seconds = Number(args.seconds);
const items = Number.parseInt(args.items ?? "10000", 10);
const sceneCount = Number.parseInt(args.scenes ?? "300", 10);
const warmup = Number(args.warmup);
if (
  levels.some((level) => !(level >= 1)) ||
  !(seconds > 0) ||
  !(items >= 10) ||
  !(sceneCount >= 2) ||
  !(warmup >= 0)
) {
  throw new Error("--concurrency n,n,… (each ≥ 1), --seconds > 0, --items ≥ 10, --scenes ≥ 2, --warmup ≥ 0.");
}
const weights = parseWeights(args.weights);
const packDir = resolvePack(args.pack);
const extraEnv: Record<string, string> = {};
for (const pair of (args.env ?? "").split(",").filter((part) => part.length > 0)) {
  const [key, ...rest] = pair.split("=");
  extraEnv[key as string] = rest.join("=");
}
const log = (line: string) => process.stdout.write(`${line}\n`);

log(
  `bench:load: ${availableParallelism()} CPUs, load average ${loadavg()
    .map((value) => value.toFixed(2))
    .join(
      " ",
    )}; levels ${levels.join(", ")} × ${seconds} s (+${warmup} s warm-up); weights ${JSON.stringify(weights)}`,
);
const seedDir = await seedDirectory();
const workload = await seedDataDir({ dir: seedDir, items, scenes: sceneCount, packDir, log });
const targets: Array<{ label: string; checkout: string; env: Record<string, string> }> = [
  { label: "this", checkout: resolve(args.checkout ?? ROOT), env: extraEnv },
];
if (args.baseline !== undefined)
  targets.unshift({ label: "baseline", checkout: resolve(args.baseline), env: {} });
const servers: ServerUnderTest[] = [];
try {
  for (const target of targets) {
    servers.push(await startServer({ ...target, seedDir, packDir, log }));
  }
  for (const concurrency of levels) {
    for (const server of servers) {
      if (warmup > 0) await driveLoad({ server, workload, concurrency, seconds: warmup, weights, seed: 99 });
      const rssStart = await server.rssMiB();
      const samples = await driveLoad({ server, workload, concurrency, seconds, weights, seed: concurrency });
      const rssEnd = await server.rssMiB();
      log(
        `\n### ${server.label}: concurrency ${concurrency}, ${seconds} s (load average ${loadavg()[0]?.toFixed(2)}); server RSS ${rssStart.toFixed(0)} → ${rssEnd.toFixed(0)} MiB\n`,
      );
      log(formatSummary(summarize(samples, seconds)));
      log(`\nchat steps, median ms: ${chatSteps(samples)}`);
    }
  }
} finally {
  for (const server of servers) await server.stop();
  await rm(resolve(seedDir, ".."), { recursive: true, force: true });
}
