/**
 * A Screens World dataset written by `loupe synth screens` as a suite:
 *
 * - corpus: the screenshots (`screens.jsonl`), no captions and no metadata ingested (their text is what is
 *   searched for), each with its ground-truth lines and size;
 * - OCR cases: one per screenshot, scoring the reading Loupe stored at ingest against the lines;
 * - text→image cases: every query of `queries.jsonl` once per search mode (`dense`, `text`, `hybrid` by
 *   default), tagged with the query type (`code`, `phrase`, `paraphrase`, `chinese`), the mode and the
 *   language;
 * - answer cases: `chat.jsonl`, asked with the screenshot attached (or, for "which screenshot shows …",
 *   against the stored corpus), scored on the answer text containing the expected text (`match: "text"`)
 *   and citing the expected evidence.
 *
 * The manifest's spec tag and counts are checked, so a truncated or foreign folder fails loudly.
 */
import { resolve } from "node:path";
import { z } from "zod";
import { SCREENS_SPEC } from "../../../synth/screens/dataset.ts";
import type {
  AnswerCase,
  CorpusImage,
  OcrCase,
  RetrievalCase,
  SearchMode,
  Suite,
  SuiteCase,
} from "../suite.ts";
import {
  failAt,
  type Place,
  parseAt,
  parseJsonFile,
  readJsonLines,
  referencedFiles,
  resolveInside,
} from "./files.ts";

/** Search modes each query is run in, by default. */
export const SCREENS_SEARCH_MODES: readonly SearchMode[] = ["dense", "text", "hybrid"];

const countSchema = z.number().int().min(0);

const manifestSchema = z.object({
  spec: z.string(),
  seed: z.number().int(),
  counts: z.object({ screens: countSchema, queries: countSchema, chat: countSchema }).loose(),
});

const boxSchema = z.tuple([z.number(), z.number(), z.number(), z.number()]);

const screenLineSchema = z.object({
  id: z.string().min(1),
  file: z.string().min(1),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  kind: z.string(),
  language: z.string(),
  app: z.string(),
  topic: z.string(),
  code: z.string(),
  lines: z.array(
    z.object({
      text: z.string(),
      box: boxSchema,
      script: z.enum(["latin", "cjk"]),
      fontPx: z.number().positive(),
    }),
  ),
});

const queryLineSchema = z.object({
  id: z.string().min(1),
  type: z.string().min(1),
  language: z.string(),
  text: z.string().min(1),
  screen: z.string().min(1),
  relevant: z.array(z.string().min(1)).min(1),
});

const chatLineSchema = z.object({
  id: z.string().min(1),
  type: z.string().min(1),
  language: z.string(),
  question: z.string().min(1),
  screen: z.string().min(1),
  attached: z.boolean(),
  answers: z.array(z.string().min(1)).min(1),
  evidence: z.array(z.string().min(1)),
});

/** Options of {@link loadScreensSuite}. */
export interface LoadScreensSuiteOptions {
  /** The folder `loupe synth screens --out` wrote. */
  dir: string;
  /** Suite name; defaults to `screens-<seed>`. */
  name?: string;
  /** Search modes to run each query in (default {@link SCREENS_SEARCH_MODES}). */
  modes?: readonly SearchMode[];
  /** Check that every image file exists (default true). */
  checkFiles?: boolean;
}

async function readLines<Schema extends z.ZodType>({
  root,
  name,
  schema,
  expected,
  what,
}: {
  root: string;
  name: string;
  schema: Schema;
  expected: number;
  what: string;
}): Promise<Array<{ place: Place; value: z.output<Schema> }>> {
  const file = resolveInside({
    root,
    path: name,
    place: { file: resolve(root, "manifest.json") },
    field: "files",
  });
  const lines = (await readJsonLines({ file, what })).map(({ line, value }) => {
    const place = { file, line };
    return { place, value: parseAt({ schema, value, place }) };
  });
  if (lines.length !== expected) {
    failAt(
      { file },
      `has ${lines.length} lines but the manifest counts ${expected}; the dataset is incomplete or was edited. Generate it again with loupe synth screens.`,
      { lines: lines.length, expected },
    );
  }
  return lines;
}

/** True when the folder's manifest is a Screens World manifest. */
export function isScreensSpec(spec: unknown): boolean {
  return spec === SCREENS_SPEC;
}

/**
 * Loads a Screens World dataset as a suite (see the module comment). Image ids are the dataset's
 * (`scr-000001`).
 *
 * @throws ValidationError for a folder without a Screens World manifest, another spec version, a file
 * whose line count differs from the manifest, a malformed line (naming file, line and field), a query or
 * chat case naming no screen, or a missing image file.
 */
export async function loadScreensSuite({
  dir,
  name,
  modes = SCREENS_SEARCH_MODES,
  checkFiles = true,
}: LoadScreensSuiteOptions): Promise<Suite> {
  const root = resolve(dir);
  const manifestFile = resolve(root, "manifest.json");
  const manifest = await parseJsonFile({
    file: manifestFile,
    what: "Screens World manifest",
    schema: manifestSchema,
  });
  if (manifest.spec !== SCREENS_SPEC) {
    failAt(
      { file: manifestFile },
      `field "spec": ${JSON.stringify(manifest.spec)} is not supported; this loader reads ${SCREENS_SPEC}. Generate the dataset again with loupe synth screens.`,
      { spec: manifest.spec },
    );
  }
  const files = referencedFiles({ root });
  const screens = await readLines({
    root,
    name: "screens.jsonl",
    schema: screenLineSchema,
    expected: manifest.counts.screens,
    what: "Screens file",
  });
  const images: CorpusImage[] = screens.map(({ place, value }) => ({
    id: value.id,
    path: files.add({ path: value.file, place, field: "file" }),
    metadata: {
      kind: value.kind,
      language: value.language,
      app: value.app,
      topic: value.topic,
      code: value.code,
    },
    lines: value.lines.map((line) => ({ ...line, box: [...line.box] })),
    size: { width: value.width, height: value.height },
  }));
  const known = new Set(images.map((image) => image.id));
  const checkScreen = (place: Place, field: string, id: string) => {
    if (!known.has(id))
      failAt(place, `field ${JSON.stringify(field)}: ${JSON.stringify(id)} is no screen of this dataset.`);
  };

  const cases: SuiteCase[] = images.map(
    (image): OcrCase => ({
      kind: "ocr",
      id: `ocr-${image.id}`,
      tags: ["ocr", String(image.metadata.language)],
      image: image.id,
    }),
  );
  const queries = await readLines({
    root,
    name: "queries.jsonl",
    schema: queryLineSchema,
    expected: manifest.counts.queries,
    what: "Queries file",
  });
  for (const mode of modes) {
    for (const { place, value } of queries) {
      checkScreen(place, "screen", value.screen);
      for (const [index, id] of value.relevant.entries()) checkScreen(place, `relevant[${index}]`, id);
      cases.push({
        kind: "retrieval",
        id: `${value.id}-${mode}`,
        tags: [value.type, mode, value.language],
        task: "text-to-image",
        query: { text: value.text },
        relevant: value.relevant,
        segments: [],
        mode,
      } satisfies RetrievalCase);
    }
  }
  const chat = await readLines({
    root,
    name: "chat.jsonl",
    schema: chatLineSchema,
    expected: manifest.counts.chat,
    what: "Chat file",
  });
  for (const { place, value } of chat) {
    checkScreen(place, "screen", value.screen);
    cases.push({
      kind: "answer",
      id: value.id,
      tags: ["screens", value.type, value.language],
      question: value.question,
      images: value.attached ? [{ kind: "corpus", id: value.screen }] : [],
      history: [],
      answers: value.answers,
      evidence: value.evidence,
      segments: [],
      unanswerable: false,
      match: "text",
    } satisfies AnswerCase);
  }
  if (checkFiles) await files.checkExist();
  return {
    name: name ?? `screens-${manifest.seed}`,
    format: "screens",
    source: root,
    corpus: { images, videos: [], triples: [] },
    cases,
  };
}
