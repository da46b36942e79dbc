/**
 * Screens World: seeded UI-like screenshots with their ground truth. {@link planScreens} draws every
 * screen's content (codes unique across the set), {@link generateScreens} renders them in order, and
 * {@link writeScreensDataset} writes a dataset folder (images, `screens.jsonl`, `queries.jsonl`,
 * `chat.jsonl`, `manifest.json`) behind `loupe synth screens`. Equal options give byte-identical output.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ValidationError } from "../../errors.ts";
import { openJsonlWriter } from "../jsonl-writer.ts";
import { createRng, deriveSeed } from "../rng.ts";
import {
  CODE_FAMILIES,
  type CodeFamily,
  SCREEN_KINDS,
  type ScreenContent,
  type ScreenFormat,
  type ScreenKind,
  type ScreenTheme,
  sampleCode,
  sampleScreenContent,
} from "./content.ts";
import {
  SCREEN_CHAT_TYPES,
  type ScreenChatCase,
  type ScreenFacts,
  type ScreenQuery,
  screenChatCase,
  screenQueries,
} from "./queries.ts";
import { type RenderedScreen, renderScreen, type ScreenLine } from "./render.ts";
import { ERROR_TOPICS, SCREEN_LANGUAGES, type ScreenLanguage } from "./vocabulary.ts";

/** Version tag of a screens dataset's manifest. */
export const SCREENS_SPEC = "loupe-screens/1";

/** Schema of the options of {@link planScreens} and {@link generateScreens}, with defaults. */
export const screensOptionsSchema = z.object({
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  count: z.number().int().min(1).max(100_000).default(50),
  languages: z.array(z.enum(SCREEN_LANGUAGES)).min(1).default(["en", "zh"]),
  kinds: z
    .array(z.enum(SCREEN_KINDS))
    .min(1)
    .default([...SCREEN_KINDS]),
  /** Screens rendered at once. */
  concurrency: z.number().int().min(1).max(16).default(2),
});
export type ScreensOptions = z.input<typeof screensOptionsSchema>;

/** A screen's ground truth, as `screens.jsonl` holds it. */
export interface ScreenTruth {
  id: string;
  /** Path of the image inside the dataset folder. */
  file: string;
  format: ScreenFormat;
  quality?: number;
  width: number;
  height: number;
  kind: ScreenKind;
  language: ScreenLanguage;
  theme: ScreenTheme;
  scale: number;
  app: string;
  /** Error topic id (`db-connection`, `license`, …). */
  topic: string;
  code: string;
  codeFamily: CodeFamily;
  title: string;
  message: string;
  /** The facts the error's templates could name (port, host, path, …). */
  facts: Record<string, string>;
  lines: ScreenLine[];
}

/** A rendered screen: the encoded image and its ground truth. */
export interface ScreenSample extends ScreenTruth {
  data: Buffer;
}

/** A screen drawn but not rendered yet. */
export interface PlannedScreen {
  id: string;
  index: number;
  content: ScreenContent;
  /** Where a table's error row goes. */
  errorRow: number;
}

const EXTENSIONS: Record<ScreenFormat, string> = { png: "png", jpeg: "jpg" };

function parseOptions(options: ScreensOptions): z.output<typeof screensOptionsSchema> {
  const parsed = screensOptionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new ValidationError(
      `Invalid screens options: ${parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ")}.`,
      { context: { issues: parsed.error.issues } },
    );
  }
  return parsed.data;
}

/** Every screen's content, in order; error codes are unique across the set. */
export function planScreens(options: ScreensOptions): PlannedScreen[] {
  const { seed, count, languages, kinds } = parseOptions(options);
  const used = new Set<string>();
  const planned: PlannedScreen[] = [];
  const payment = ERROR_TOPICS.find((topic) => topic.id === "payment");
  for (let index = 0; index < count; index++) {
    const rng = createRng(deriveSeed(seed, "screen", index));
    const language = languages[index % languages.length] as ScreenLanguage;
    const kind = kinds[Math.floor(index / languages.length) % kinds.length] as ScreenKind;
    const topic = kind === "receipt" && payment !== undefined ? payment : rng.pick(ERROR_TOPICS);
    const codeFamily = rng.pick(CODE_FAMILIES);
    let code = sampleCode(rng, codeFamily, topic);
    for (let attempt = 0; used.has(code); attempt++) {
      code = sampleCode(rng.fork("code", attempt), codeFamily, topic);
    }
    used.add(code);
    const content = sampleScreenContent({ rng, kind, language, code, codeFamily, topic });
    planned.push({
      id: `scr-${String(index + 1).padStart(6, "0")}`,
      index,
      content,
      errorRow: rng.int(0, 6),
    });
  }
  return planned;
}

/** Renders one planned screen. */
export async function renderPlannedScreen(plan: PlannedScreen): Promise<ScreenSample> {
  const rendered: RenderedScreen = await renderScreen(plan.content, { errorRow: plan.errorRow });
  const { content } = plan;
  return {
    id: plan.id,
    file: `images/${plan.id}.${EXTENSIONS[content.format]}`,
    format: content.format,
    ...(content.quality === undefined ? {} : { quality: content.quality }),
    width: rendered.width,
    height: rendered.height,
    kind: content.kind,
    language: content.language,
    theme: content.theme,
    scale: content.scale,
    app: content.app,
    topic: content.topic.id,
    code: content.code,
    codeFamily: content.codeFamily,
    title: content.title,
    message: content.message,
    facts: { ...content.facts },
    lines: rendered.lines,
    data: rendered.data,
  };
}

/**
 * The screens of `options`, rendered and yielded in order (a few at once, as `concurrency` says). Each
 * sample has the encoded image (`data`, `format`, `width`, `height`) and every line's text, box, script
 * and pixel size.
 */
export async function* generateScreens(options: ScreensOptions): AsyncGenerator<ScreenSample> {
  const { concurrency } = parseOptions(options);
  const plans = planScreens(options);
  for (let start = 0; start < plans.length; start += concurrency) {
    const batch = await Promise.all(plans.slice(start, start + concurrency).map(renderPlannedScreen));
    yield* batch;
  }
}

/** The ground truth of a sample, without its bytes. */
export function truthOf(sample: ScreenSample): ScreenTruth {
  const { data: _data, ...truth } = sample;
  return truth;
}

/** Queries and chat cases for a set of screens (deterministic for the seed). */
export function screensCases({ seed, screens }: { seed: number; screens: readonly ScreenFacts[] }): {
  queries: ScreenQuery[];
  chat: ScreenChatCase[];
} {
  let queryCount = 0;
  const nextId = () => `sq-${String(++queryCount).padStart(6, "0")}`;
  const queries: ScreenQuery[] = [];
  const chat: ScreenChatCase[] = [];
  for (const [index, screen] of screens.entries()) {
    const rng = createRng(deriveSeed(seed, "screen-cases", index));
    queries.push(...screenQueries({ rng, screen, screens, nextId }));
    const type = SCREEN_CHAT_TYPES[index % SCREEN_CHAT_TYPES.length] ?? "what-says";
    chat.push(screenChatCase({ rng, screen, type, id: `sc-${String(index + 1).padStart(6, "0")}` }));
  }
  return { queries, chat };
}

/** Options of {@link writeScreensDataset}. */
export type ScreensDatasetOptions = ScreensOptions & {
  outDir: string;
  /** Replace a previous dataset (a folder holding a manifest.json). */
  overwrite?: boolean;
  onProgress?: (progress: { phase: "screens"; done: number; total: number }) => void;
};

/** What a screens dataset's `manifest.json` holds. */
export interface ScreensManifest {
  spec: typeof SCREENS_SPEC;
  seed: number;
  options: { count: number; languages: ScreenLanguage[]; kinds: ScreenKind[] };
  counts: { screens: number; lines: number; queries: number; chat: number };
}

async function prepareOutDir(outDir: string, overwrite: boolean): Promise<void> {
  if (existsSync(outDir)) {
    const entries = await readdir(outDir);
    if (entries.length > 0) {
      if (!overwrite) {
        throw new ValidationError(
          `Output folder ${outDir} is not empty; give an empty or new folder, or --overwrite to replace a previous dataset.`,
          { context: { outDir } },
        );
      }
      if (!entries.includes("manifest.json")) {
        throw new ValidationError(
          `Output folder ${outDir} holds no manifest.json, so it is not a previous dataset; --overwrite only replaces datasets.`,
          { context: { outDir } },
        );
      }
      await rm(outDir, { recursive: true, force: true });
    }
  }
  await mkdir(join(outDir, "images"), { recursive: true });
}

/** Writes a screens dataset to `outDir` (see the module comment) and returns its manifest. */
export async function writeScreensDataset({
  outDir,
  overwrite = false,
  onProgress,
  ...options
}: ScreensDatasetOptions): Promise<ScreensManifest & { seconds: number }> {
  const started = performance.now();
  const parsed = parseOptions(options);
  await prepareOutDir(outDir, overwrite);
  const screensFile = openJsonlWriter(join(outDir, "screens.jsonl"));
  const facts: ScreenFacts[] = [];
  let lines = 0;
  try {
    for await (const sample of generateScreens(options)) {
      await writeFile(join(outDir, sample.file), sample.data);
      const truth = truthOf(sample);
      await screensFile.write(truth);
      facts.push(truth);
      lines += truth.lines.length;
      onProgress?.({ phase: "screens", done: facts.length, total: parsed.count });
    }
  } finally {
    await screensFile.close();
  }
  const { queries, chat } = screensCases({ seed: parsed.seed, screens: facts });
  const queriesFile = openJsonlWriter(join(outDir, "queries.jsonl"));
  for (const query of queries) await queriesFile.write(query);
  await queriesFile.close();
  const chatFile = openJsonlWriter(join(outDir, "chat.jsonl"));
  for (const item of chat) await chatFile.write(item);
  await chatFile.close();
  const manifest: ScreensManifest = {
    spec: SCREENS_SPEC,
    seed: parsed.seed,
    options: { count: parsed.count, languages: parsed.languages, kinds: parsed.kinds },
    counts: { screens: facts.length, lines, queries: queries.length, chat: chat.length },
  };
  await writeFile(join(outDir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return { ...manifest, seconds: (performance.now() - started) / 1000 };
}
