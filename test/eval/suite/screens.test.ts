/**
 * The screens suite end to end over a scripted Loupe: the loader's cases, the OCR cases scored from what
 * `GET /v1/items` returns (boxes scaled, errors counted per bucket), recall per search mode and query type,
 * answers read off screenshots, the reports' tables, and the gate on error rates.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ListedItem } from "../../../src/client/index.ts";
import type { LoupeClient } from "../../../src/eval/suite/client.ts";
import { compareToBaseline, formatGateReport } from "../../../src/eval/suite/gate.ts";
import { loadScreensSuite } from "../../../src/eval/suite/loaders/screens.ts";
import { resolveSuite } from "../../../src/eval/suite/named-suites.ts";
import { renderHtmlReport } from "../../../src/eval/suite/report-html.ts";
import { renderMarkdownReport } from "../../../src/eval/suite/report-md.ts";
import type { RunResults } from "../../../src/eval/suite/results.ts";
import { runSuite } from "../../../src/eval/suite/run.ts";
import type { CorpusImage, Suite } from "../../../src/eval/suite/suite.ts";
import type { ChatResult } from "../../../src/rag/types.ts";
import { writeScreensDataset } from "../../../src/synth/index.ts";

let root: string;
let suite: Suite;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "loupe-screens-suite-"));
  await writeScreensDataset({ outDir: join(root, "set"), seed: 4, count: 6 });
  suite = await loadScreensSuite({ dir: join(root, "set") });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const chatResult = (answer: string, cited: string[]): ChatResult =>
  ({
    answer,
    answered: true,
    confidence: 1,
    citations: cited.map((id) => ({
      id,
      kind: "image",
      mediaUrl: null,
      thumbnailUrl: null,
      start: null,
      end: null,
      question: null,
      answer: null,
      score: 1,
    })),
    evidence: [],
    standaloneQuestion: answer,
    composer: "offline",
    model: "none",
    verification: { checked: 0, confirmed: 0, contradictions: [], corrected: false },
    timings: { embed: 0, retrieve: 0, ground: 0, compose: 0, verify: 0, total: 0 },
  }) as unknown as ChatResult;

/**
 * A Loupe that read every image perfectly at half size except one character of the first image's first
 * English line of 12 px or more; text and hybrid search find the image whose lines hold the query, dense
 * search ranks the corpus backwards; chat answers with the expected text and cites it for every other case.
 */
function scriptedLoupe(images: readonly CorpusImage[]): { client: LoupeClient; corrupted: string } {
  const first = images[0] as CorpusImage;
  const target = first.lines?.find((line) => line.script === "latin" && line.fontPx >= 12);
  let asked = 0;
  const stored = (index: number) => `img_${String(index).padStart(4, "0")}`;
  const client: LoupeClient = {
    target: "scripted",
    ingestImages: async (items) =>
      items.map((item) => ({
        index: items.indexOf(item),
        status: "stored" as const,
        id: stored(images.findIndex((image) => image.path === item.path)),
      })),
    ingestVideos: async () => [],
    ingestTriples: async () => [],
    detect: async () => ({ model: "m", detections: [] }),
    listImages: async () =>
      images.map(
        (image, index): ListedItem => ({
          kind: "image",
          id: stored(index),
          mediaUrl: "",
          source: "",
          modelId: "m",
          createdAt: 0,
          text: "",
          metadata: {
            ocr: {
              engine: "scripted",
              width: (image.size?.width ?? 0) / 2,
              height: (image.size?.height ?? 0) / 2,
              minConfidence: 0.5,
              lines: (image.lines ?? []).map((line) => ({
                text: line === target ? `${line.text.slice(0, -1)}#` : line.text,
                confidence: 0.9,
                box: line.box.map((value) => value / 2),
              })),
            },
          },
        }),
      ),
    search: async (request) => {
      const query = (request.text ?? "").replace(/^"|"$|^error | screenshot$/gu, "").toLowerCase();
      const order = images.map((image, index) => ({ image, index }));
      const ranked =
        request.mode === "dense"
          ? order.reverse()
          : [
              ...order.filter(({ image }) =>
                image.lines?.some((line) => line.text.toLowerCase().includes(query)),
              ),
              ...order.filter(
                ({ image }) => !image.lines?.some((line) => line.text.toLowerCase().includes(query)),
              ),
            ];
      return ranked.map(({ index }) => ({ id: stored(index), kind: "image" })) as never;
    },
    chat: async (body) => {
      asked += 1;
      // Chat cases run one at a time in suite order.
      const item = suite.cases.filter((entry) => entry.kind === "answer")[asked - 1];
      expect(item?.kind === "answer" && item.question).toBe(body.question);
      if (item?.kind !== "answer" || asked % 2 === 0) return chatResult("I cannot tell.", []);
      const cited = item.evidence.map((id) => (id.startsWith("att_") ? id : stored(Number(id.slice(4)) - 1)));
      return chatResult(`It says: ${item.answers[0]} [${cited[0]}].`, cited);
    },
  };
  return { client, corrupted: target?.text ?? "" };
}

describe("the screens suite", () => {
  it("has an OCR case per screenshot, every query in three modes, and a chat case per screenshot", () => {
    const kinds = suite.cases.map((item) =>
      item.kind === "retrieval" ? `retrieval:${item.mode}` : item.kind,
    );
    const count = (name: string) => kinds.filter((kind) => kind === name).length;
    expect(count("ocr")).toBe(6);
    expect(count("retrieval:dense")).toBe(count("retrieval:hybrid"));
    expect(count("retrieval:text")).toBeGreaterThanOrEqual(12);
    expect(count("answer")).toBe(6);
    expect(
      suite.corpus.images.every((image) => (image.lines?.length ?? 0) > 3 && image.caption === undefined),
    ).toBe(true);
  });

  it("scores OCR from the stored readings, recall per mode and type, and answers read off screenshots", async () => {
    const { client, corrupted } = scriptedLoupe(suite.corpus.images);
    expect(corrupted.length).toBeGreaterThan(3);
    const results: RunResults = await runSuite({ suite, client });
    const { figures } = results.summary;
    const latinChars = results.summary.ocr?.byBucket.latin12?.chars ?? 0;
    expect(latinChars).toBeGreaterThan(100);
    expect(figures["ocr.cer.latin12"]).toBeCloseTo(1 / latinChars, 6);
    expect(figures["ocr.cer.cjk"]).toBe(0);
    expect(figures["ocr.lineRecall"]).toBe(1);
    expect(figures["search.text.code.recallAt1"]).toBe(1);
    expect(figures["search.hybrid.phrase.recallAt1"]).toBe(1);
    expect(figures["search.dense.recallAt1"]).toBeLessThan(0.5);
    // Every other chat case is answered with its text and evidence.
    expect(figures["textAnswers.accuracy"]).toBeCloseTo(0.5, 6);
    // Mode cases stay out of the task figures shapes suites gate on.
    expect(figures["retrieval.text-to-image.recallAt10"]).toBeUndefined();
    const report = renderMarkdownReport({ results });
    expect(report).toContain("## OCR (6 images");
    expect(report).toContain("English, 12 px and larger");
    expect(report).toContain("Text→screenshot search by mode");
    const html = renderHtmlReport({ results, thumbnails: new Map() });
    expect(html).toContain("<h2>OCR (6 images");
    expect(html).toContain("<h2>Answers read off screenshots");

    const worse: RunResults = {
      ...results,
      summary: {
        ...results.summary,
        figures: { ...figures, "ocr.cer.latin12": (figures["ocr.cer.latin12"] ?? 0) + 0.05 },
      },
    };
    const gate = compareToBaseline({ current: worse, baseline: results });
    expect(gate.passed).toBe(false);
    expect(gate.failures.map((row) => row.metric)).toEqual(["ocr.cer.latin12"]);
    expect(formatGateReport(gate)).toMatch(
      /OCR CER, English ≥ 12 px \(ocr\.cer\.latin12\) rose \+0\.050 \(tolerance \+0\.01\)/u,
    );
    const better: RunResults = {
      ...results,
      summary: { ...results.summary, figures: { ...figures, "ocr.cer.latin12": 0 } },
    };
    expect(compareToBaseline({ current: better, baseline: results }).passed).toBe(true);
  });

  it("is a named suite generated from its own seed, and a folder is told apart from a Shapes World split", async () => {
    const resolved = await resolveSuite({ suite: "screens-ci", screens: 4, workDir: join(root, "named") });
    expect(resolved.seed).toBe(880_002);
    expect(resolved.suite.format).toBe("screens");
    expect(resolved.suite.corpus.images).toHaveLength(4);
    const byPath = await resolveSuite({ suite: join(root, "set") });
    expect(byPath.suite.format).toBe("screens");
  });
});
