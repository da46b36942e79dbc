/**
 * The eval runner end to end, in-process over a real embedded Milvus Lite and the bundled model pack: a
 * tiny JSON Lines suite over generated Shapes World images (every caption hostile) is ingested and run;
 * results.json, report.md and report.html are written, the hostile caption reaches the report only
 * escaped, and the command run again against a baseline with a higher figure exits 1 naming it, while
 * every other figure comes out the same (a run is deterministic).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baselineOf, type EvalOutcome, runEval } from "../../../src/eval/suite/cli.ts";
import type { RunResults } from "../../../src/eval/suite/results.ts";
import { generateDataset, readJsonl } from "../../../src/synth/index.ts";

const ROOT = path.join(import.meta.dirname, "..", "..", "..");
const HOSTILE_CAPTION = `<script>alert("caption")</script><img src=x onerror=alert(2)>`;

interface SceneLine {
  id: string;
  file: string;
  scene: { objects: Array<{ color: string; shape: string }> };
}
interface VqaLine {
  image: string;
  question: string;
  answer: string;
}

describe("eval runner, in-process end to end", () => {
  let workDir: string;
  let suiteFile: string;
  let outcome: EvalOutcome;
  let printed: string[];

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-eval-int-"));
    const dataset = path.join(workDir, "suite");
    await generateDataset({
      outDir: dataset,
      seed: 9100,
      images: 8,
      size: 128,
      format: "jpeg",
      triples: 2,
      videos: 0,
    });
    const scenes = await readJsonl<SceneLine>(path.join(dataset, "scenes.jsonl"));
    const vqa = await readJsonl<VqaLine>(path.join(dataset, "vqa.jsonl"));
    const [first, second] = scenes as [SceneLine, SceneLine];
    const question = vqa.find((line) => line.image === first.id) as VqaLine;
    const pair = `${first.scene.objects[0]?.color} ${first.scene.objects[0]?.shape}`;
    const lines = [
      ...scenes.map((scene, index) => ({
        type: "image",
        id: scene.id,
        path: scene.file,
        caption: `${HOSTILE_CAPTION} #${index}`,
      })),
      {
        type: "triple",
        id: "tri-a",
        image: { corpus: second.id },
        question: "What color is the big shape?",
        answer: "green",
      },
      {
        id: "attached",
        question: question.question,
        images: [{ corpus: first.id }],
        answer: question.answer,
        evidence: ["att_1"],
      },
      { id: "corpus", question: `Is there an image with a ${pair}?`, answer: "yes", evidence: [first.id] },
      // Fails on purpose, so the failures table shows the retrieved evidence and its stored caption.
      {
        id: "wrong",
        question: `Is there an image with a ${pair}?`,
        answer: "a purple elephant",
        evidence: [first.id],
      },
      {
        id: "off-domain",
        question: "Who wrote <b>Hamlet</b>? </td><script>alert(3)</script>",
        unanswerable: true,
      },
    ];
    suiteFile = path.join(dataset, "suite.jsonl");
    await writeFile(suiteFile, `${lines.map((line) => JSON.stringify(line)).join("\n")}\n`);
    printed = [];
    outcome = await runEval({
      suite: suiteFile,
      out: path.join(workDir, "run-1"),
      env: { ...process.env, LOUPE_LOG_LEVEL: "silent" },
      print: (line) => printed.push(line),
    });
  }, 240_000);

  afterAll(async () => {
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("writes results.json with every case, its answer, evidence and metrics, and the run facts", async () => {
    const results = JSON.parse(
      await readFile(path.join(outcome.outDir, "results.json"), "utf8"),
    ) as RunResults;
    expect(results.cases.map((record) => record.id)).toEqual(["attached", "corpus", "wrong", "off-domain"]);
    expect(results.meta).toMatchObject({
      suite: "suite",
      format: "loupe-jsonl",
      target: "in-process",
      composer: "offline",
      modelPack: expect.stringMatching(/^shapes-world-tiny/),
      corpus: { images: 8, videos: 0, triples: 1 },
      ingestFailures: [],
    });
    expect(results.summary.errors).toBe(0);
    const attached = results.cases[0];
    expect(attached?.output.citations).toContain("att_1");
    expect(attached?.metrics.citationRecall).toBe(1);
    expect(typeof attached?.timings.total).toBe("number");
    const offDomain = results.cases[3];
    expect(offDomain?.metrics.abstained).toBe(true);
    expect(results.summary.figures["abstention.recall"]).toBe(1);
    // Stored ids are mapped back to the suite's ids before scoring and reporting.
    const wrong = results.cases[2];
    expect(wrong?.passed).toBe(false);
    expect(wrong?.output.evidence?.some((item) => /^img-\d+$/.test(item.id))).toBe(true);
    expect(wrong?.output.evidence?.some((item) => item.text?.includes(HOSTILE_CAPTION))).toBe(true);
    expect(printed.join("\n")).toContain("suite suite: 4 cases (0 errors)");
  });

  it("writes report.md and a report.html in which the hostile caption and question are escaped", async () => {
    const markdown = await readFile(path.join(outcome.outDir, "report.md"), "utf8");
    expect(markdown).toContain("## Answers");
    // "wrong" fails by design; "attached" rests on the VQA head and may fail too.
    expect(markdown).toMatch(/## Failures \([12]\)/);
    expect(markdown).toContain("| wrong | answer | Is there an image with a");
    const html = await readFile(path.join(outcome.outDir, "report.html"), "utf8");
    expect(html).toContain("&#60;script&#62;alert(&#34;caption&#34;)&#60;/script&#62;");
    expect(html).not.toMatch(/<script|<img src=x|<b>Hamlet/);
    expect(html).toMatch(/<img class="thumb" alt="" src="data:image\/jpeg;base64,[A-Za-z0-9+/=]{100,}">/);
  });

  it("exits 1 against a baseline with a higher gated figure, naming it; the other figures repeat exactly", async () => {
    const bumped = baselineOf(outcome.results);
    const contains = bumped.summary.figures["answers.contains"] as number;
    bumped.summary.figures["answers.contains"] = contains + 0.2;
    const baselineFile = path.join(workDir, "baseline.json");
    await writeFile(baselineFile, JSON.stringify(bumped));
    const secondOut = path.join(workDir, "run-2");
    const run = promisify(execFile);
    const failure = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        path.join(ROOT, "src", "eval", "suite", "cli.ts"),
        "--suite",
        suiteFile,
        "--out",
        secondOut,
        "--baseline",
        baselineFile,
      ],
      { cwd: ROOT, env: { ...process.env, LOUPE_LOG_LEVEL: "silent" }, timeout: 200_000 },
    ).then(
      () => undefined,
      (error: { code?: number; stdout?: string }) => error,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stdout).toContain("gate: FAILED: answer contains-rate (answers.contains) dropped -0.200");
    const second = JSON.parse(await readFile(path.join(secondOut, "results.json"), "utf8")) as RunResults;
    const stable = (figures: Record<string, number | null>) =>
      Object.fromEntries(Object.entries(figures).filter(([name]) => !name.startsWith("latency.")));
    expect(stable(second.summary.figures)).toEqual(stable(outcome.results.summary.figures));
    expect(second.cases.map((record) => record.output.answer)).toEqual(
      outcome.results.cases.map((record) => record.output.answer),
    );
    const html = await readFile(path.join(secondOut, "report.html"), "utf8");
    expect(html).toContain("Gate failed: answer contains-rate.");
  }, 240_000);
});
