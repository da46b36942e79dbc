/**
 * `npm run eval:recommend`: simulated users over a held-out Shapes World set (see `recommend-eval.ts`),
 * printed as tables. Flags: `--pack <dir>` (the shipped pack by default), `--images <n>`, `--sessions <n>`,
 * `--seed <n>`, `--json <file>`.
 */
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { formatTable } from "../../cli/table.ts";
import { parseConfig } from "../../config.ts";
import { loadModelPack } from "../../inference/model-pack.ts";
import { evaluateRecommendations, type RecommendEvalReport } from "./recommend-eval.ts";

/** The report as text. */
export function formatRecommendEvalReport(report: RecommendEvalReport): string {
  const fixed = (value: number) => (Number.isNaN(value) ? "-" : value.toFixed(3));
  const lines = [
    `${report.modelId}: simulated users over ${report.images} held-out Shapes World images (seed ${report.seed}), ${report.sessionsPerUser} sessions per user, each from another liked image. Precision@10 of the list shown.`,
    "",
  ];
  for (const group of report.groups) {
    lines.push(
      `${group.group} preferences: ${group.users} users, ${group.sessions} sessions; ${fixed(group.baseRate)} of the images are relevant to a user on average.`,
      formatTable([
        ["strategy", "1 interaction", "5", "20", "5 likes", "20 likes"],
        ...group.strategies.map((strategy) => [
          strategy.strategy,
          fixed(strategy.afterInteractions["1"]),
          fixed(strategy.afterInteractions["5"]),
          fixed(strategy.afterInteractions["20"]),
          fixed(strategy.afterLikes["5"]),
          fixed(strategy.afterLikes["20"]),
        ]),
      ]),
      `${report.groups[0] === group ? "Default strategy, P@10 after 5 likes by user" : "By user"}: ${group.perUser
        .map(({ user, afterFiveLikes }) => `${user} ${fixed(afterFiveLikes)}`)
        .join(", ")}.`,
      "",
    );
  }
  lines.push("Targets:");
  for (const target of report.targets) {
    lines.push(
      `  ${target.met ? "met    " : "NOT MET"}  ${target.name}: ${fixed(target.value)} (${target.target})`,
    );
  }
  lines.push(
    "",
    `Embedding ${(report.timings.embedMs / 1000).toFixed(1)} s, simulation ${(report.timings.simulateMs / 1000).toFixed(1)} s.`,
  );
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      pack: { type: "string" },
      images: { type: "string", default: "600" },
      sessions: { type: "string", default: "8" },
      seed: { type: "string" },
      json: { type: "string" },
    },
  });
  const config = parseConfig({ env: {}, cwd: process.cwd() });
  const models = await loadModelPack({
    dir: values.pack ?? config.modelPack,
    imageLimits: {
      maxInputBytes: config.maxImageBytes,
      maxInputPixels: config.maxImagePixels,
      maxFrames: config.maxImageFrames,
    },
  });
  try {
    const report = await evaluateRecommendations({
      models,
      images: Number(values.images),
      sessionsPerUser: Number(values.sessions),
      ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
    });
    console.log(formatRecommendEvalReport(report));
    if (values.json !== undefined) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
    if (report.targets.some((target) => !target.met)) process.exitCode = 1;
  } finally {
    await models.close();
  }
}

await main();
