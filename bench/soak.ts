/**
 * `npm run bench:soak [-- options]`: a real `loupe serve` (seeded as for `bench:load`) under moderate
 * mixed load for `--minutes`, reporting every minute the server's resident memory and that minute's
 * requests, p95 and errors; at the end, the growth of resident memory after the warm-up (the first
 * `--warmup-minutes`) and every error other than a shed 503 (one that carries `Retry-After`).
 *
 * Options: --minutes <n> (default 30), --concurrency <n> (default 4), --warmup-minutes <n> (default 3),
 * --items <n> (default 10000), --scenes <n> (default 300), --weights as `bench:load`, --pack <dir>,
 * --checkout <dir> (another built checkout to serve, as for `bench:load`).
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
  type Sample,
  seedDataDir,
  seedDirectory,
  startServer,
  summarize,
} from "./load-driver.ts";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    concurrency: { type: "string", default: "4" },
    "warmup-minutes": { type: "string", default: "3" },
    items: { type: "string", default: "10000" },
    scenes: { type: "string", default: "300" },
    weights: { type: "string" },
    pack: { type: "string" },
    checkout: { type: "string" },
  },
});
const minutes = Number(args.minutes);
const concurrency = Number.parseInt(args.concurrency ?? "4", 10);
const warmupMinutes = Number(args["warmup-minutes"]);
const items = Number.parseInt(args.items ?? "10000", 10);
const sceneCount = Number.parseInt(args.scenes ?? "300", 10);
if (!(minutes >= 1) || !(concurrency >= 1) || !(warmupMinutes >= 0) || warmupMinutes >= minutes) {
  throw new Error("--minutes ≥ 1, --concurrency ≥ 1, 0 ≤ --warmup-minutes < --minutes.");
}
const weights = parseWeights(args.weights);
const packDir = resolvePack(args.pack);
const log = (line: string) => process.stdout.write(`${line}\n`);

log(
  `bench:soak: ${availableParallelism()} CPUs, load average ${loadavg()
    .map((value) => value.toFixed(2))
    .join(" ")}; ${concurrency} clients for ${minutes} min, warm-up ${warmupMinutes} min`,
);
const seedDir = await seedDirectory();
const workload = await seedDataDir({ dir: seedDir, items, scenes: sceneCount, packDir, log });
const server = await startServer({
  label: "soak",
  checkout: resolve(args.checkout ?? ROOT),
  seedDir,
  packDir,
  log,
});
try {
  const rss: number[] = [await server.rssMiB()];
  log(`minute 0: RSS ${rss[0]?.toFixed(0)} MiB`);
  let seen = 0;
  const samples = await driveLoad({
    server,
    workload,
    concurrency,
    seconds: minutes * 60,
    weights,
    seed: 7,
    tickSeconds: 60,
    onTick: async (sofar: readonly Sample[], elapsed: number) => {
      const minute = sofar.slice(seen);
      seen = sofar.length;
      const current = await server.rssMiB();
      rss.push(current);
      const all = summarize(minute, 60).find((row) => row.kind === "all");
      log(
        `minute ${elapsed / 60}: RSS ${current.toFixed(0)} MiB, ${minute.length} requests, p95 ${all?.p95.toFixed(0)} ms, errors ${JSON.stringify(all?.errors ?? {})}, load average ${loadavg()[0]?.toFixed(2)}`,
      );
    },
  });
  const end = await server.rssMiB();
  const afterWarmup = rss[Math.round(warmupMinutes)] ?? rss[0] ?? 0;
  const rows = summarize(samples, minutes * 60);
  const bad = rows.find((row) => row.kind === "all");
  log(`\n### soak: ${concurrency} clients, ${minutes} min\n`);
  log(formatSummary(rows));
  log(`\nchat steps, median ms: ${chatSteps(samples)}`);
  log(
    `\nRSS: start ${rss[0]?.toFixed(0)} MiB, after warm-up (minute ${warmupMinutes}) ${afterWarmup.toFixed(0)} MiB, end ${end.toFixed(0)} MiB; growth after warm-up ${(end - afterWarmup).toFixed(0)} MiB (${(((end - afterWarmup) / Math.max(1, minutes - warmupMinutes)) * 60).toFixed(1)} MiB/h)`,
  );
  // One minute's reading swings by tens of MiB (garbage collection, the ONNX arenas of the model
  // workers), so growth is also judged on medians of five-minute windows: the first after the warm-up
  // against the last.
  const window = Math.min(5, Math.max(1, Math.floor((rss.length - 1 - warmupMinutes) / 2)));
  const first = median(rss.slice(Math.round(warmupMinutes), Math.round(warmupMinutes) + window));
  const last = median(rss.slice(-window));
  log(
    `RSS medians of ${window}-minute windows: first after warm-up ${first.toFixed(0)} MiB, last ${last.toFixed(0)} MiB; growth ${(((last - first) / first) * 100).toFixed(1)} %`,
  );
  const nonShed = Object.entries(bad?.errors ?? {}).filter(([status]) => status !== "429");
  log(
    `errors other than shed 503s: ${bad?.bad ?? 0} (non-2xx by status: ${nonShed.map(([s, c]) => `${s}: ${c}`).join(", ") || "none"}; shed 503 with Retry-After: ${bad?.shed503 ?? 0})`,
  );
} finally {
  await server.stop();
  await rm(resolve(seedDir, ".."), { recursive: true, force: true });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}
