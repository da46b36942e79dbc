/**
 * Loupe's own suite format: a JSON Lines file of chat cases, optionally with the corpus they run against
 * on lines of their own. One JSON object per line:
 *
 * ```jsonl
 * {"type":"image","id":"red-car","path":"images/red-car.jpg","caption":"a red car","metadata":{"source":"x"}}
 * {"type":"video","id":"street","path":"videos/street.mp4","segments":[{"start":0,"end":4,"label":"car passes"}]}
 * {"type":"triple","id":"car-color","image":"images/red-car.jpg","question":"What color is the car?","answer":"red"}
 * {"id":"q1","question":"What color is the car?","answers":["red","dark red"],"evidence":["red-car"],"tags":["color"]}
 * {"id":"q2","question":"When does the car pass?","segments":[{"videoId":"street","start":0,"end":4}]}
 * {"id":"q3","question":"What is in this picture?","images":["queries/dog.jpg"],"answer":"a dog","evidence":["att_1"]}
 * {"id":"q4","question":"Who painted the car?","unanswerable":true}
 * ```
 *
 * Case lines (`"type":"case"` or no type) are {@link jsonlCaseSchema}; corpus lines are
 * {@link jsonlImageSchema}, {@link jsonlVideoSchema} and {@link jsonlTripleSchema}. Paths are relative to
 * the suite file and stay inside its folder. Evidence ids are corpus ids, stored ids (`img_…`, `seg_…`,
 * `tri_…`, `vid_…`) or `att_<n>` for the n-th image of the conversation (history first). Unknown fields
 * are errors, so a misspelt field never passes silently.
 */
import { basename, dirname, extname, resolve } from "node:path";
import { z } from "zod";
import type {
  AnswerCase,
  Corpus,
  CorpusImage,
  CorpusTriple,
  CorpusVideo,
  ImageRef,
  Suite,
} from "../suite.ts";
import { failAt, type Place, parseAt, readJsonLines, referencedFiles } from "./files.ts";

const STORED_ID = /^(img|seg|tri|vid)_[A-Za-z0-9]+$/u;
const ATTACHMENT_ID = /^att_([1-9][0-9]*)$/u;
const RESERVED_PREFIX = /^(img|seg|tri|vid|att)_/u;

const idSchema = z
  .string()
  .regex(/^\S{1,200}$/u, { error: "must be 1–200 characters without spaces" })
  .refine((id) => !RESERVED_PREFIX.test(id), {
    error: "must not start with img_, seg_, tri_, vid_ or att_ (those name stored items and attachments)",
  });

const metadataSchema = z.record(z.string(), z.unknown()).default({});

/** An image in a suite file: a relative path, a stored image id, or a corpus image id. */
export const jsonlImageRefSchema = z.union(
  [
    z.string().min(1),
    z.strictObject({ stored: z.string().regex(/^img_[A-Za-z0-9]+$/u) }),
    z.strictObject({ corpus: z.string().min(1) }),
  ],
  { error: 'an image is a path relative to the suite file, {"stored": "img_…"} or {"corpus": "<image id>"}' },
);

const secondsSchema = z
  .number()
  .min(0, { error: "must be seconds ≥ 0" })
  .max(86_400 * 7);

/** An expected video span: a corpus video id or a stored `vid_…` id, with start < end in seconds. */
export const jsonlSegmentSchema = z
  .strictObject({ videoId: z.string().min(1), start: secondsSchema, end: secondsSchema })
  .refine((segment) => segment.end > segment.start, {
    error: "end must be greater than start",
    path: ["end"],
  });

/** A chat case line. Give `answer` or `answers` (not both), unless the case is unanswerable. */
export const jsonlCaseSchema = z.strictObject({
  type: z.literal("case").optional(),
  id: idSchema,
  question: z.string().trim().min(1, { error: "must not be empty" }).max(8000),
  images: z.array(jsonlImageRefSchema).max(16).default([]),
  history: z
    .array(
      z.strictObject({
        role: z.enum(["user", "assistant"]),
        content: z.string().max(32_000),
        images: z.array(jsonlImageRefSchema).max(16).default([]),
      }),
    )
    .max(100)
    .default([]),
  answer: z.string().trim().min(1, { error: "must not be empty" }).optional(),
  answers: z
    .array(z.string().trim().min(1, { error: "must not be empty" }))
    .min(1)
    .optional(),
  evidence: z.array(z.string().min(1)).default([]),
  segments: z.array(jsonlSegmentSchema).default([]),
  unanswerable: z.boolean().default(false),
  tags: z.array(z.string().min(1)).default([]),
});
export type JsonlCase = z.input<typeof jsonlCaseSchema>;

/** A corpus image line. */
export const jsonlImageSchema = z.strictObject({
  type: z.literal("image"),
  id: idSchema,
  path: z.string().min(1),
  caption: z.string().max(8000).optional(),
  metadata: metadataSchema,
});

/** A corpus video line, with optional ground-truth spans. */
export const jsonlVideoSchema = z.strictObject({
  type: z.literal("video"),
  id: idSchema,
  path: z.string().min(1),
  metadata: metadataSchema,
  segments: z
    .array(
      z
        .strictObject({ start: secondsSchema, end: secondsSchema, label: z.string().optional() })
        .refine((span) => span.end > span.start, { error: "end must be greater than start", path: ["end"] }),
    )
    .default([]),
});

/** A corpus triple line. */
export const jsonlTripleSchema = z.strictObject({
  type: z.literal("triple"),
  id: idSchema,
  image: jsonlImageRefSchema,
  question: z.string().trim().min(1),
  answer: z.string().trim().min(1),
  metadata: metadataSchema,
});

const LINE_SCHEMAS = {
  case: jsonlCaseSchema,
  image: jsonlImageSchema,
  video: jsonlVideoSchema,
  triple: jsonlTripleSchema,
} as const;
type LineType = keyof typeof LINE_SCHEMAS;

type ParsedLine = {
  [Type in LineType]: { type: Type; place: Place; value: z.output<(typeof LINE_SCHEMAS)[Type]> };
}[LineType];

function isLineType(type: unknown): type is LineType {
  return typeof type === "string" && Object.hasOwn(LINE_SCHEMAS, type);
}

function parseLine(value: unknown, place: Place): ParsedLine {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    failAt(place, "each line must be a JSON object (a case, or a corpus image, video or triple).");
  }
  const type = (value as { type?: unknown }).type ?? "case";
  if (!isLineType(type)) {
    return failAt(
      place,
      `field "type": ${JSON.stringify(type)} is not a line type; allowed: ${Object.keys(LINE_SCHEMAS).join(", ")} (no type means case).`,
      { type },
    );
  }
  const schema = LINE_SCHEMAS[type];
  const parsed = parseAt({ schema, value, place, allowedFields: Object.keys(schema.shape) });
  return { type, place, value: parsed } as ParsedLine;
}

/** Options of {@link loadJsonlSuite}. */
export interface LoadJsonlSuiteOptions {
  /** The suite file. */
  file: string;
  /** Suite name; defaults to the file name without its extension. */
  name?: string;
  /** A corpus the cases may also refer to (a Shapes World split's, say); the file's own lines add to it. */
  baseCorpus?: Corpus;
  /** Check that every referenced file exists (default true). */
  checkFiles?: boolean;
}

/**
 * Loads a suite in Loupe's JSON Lines format (see the module comment).
 *
 * @throws ValidationError naming the file, the line, the field and what is allowed, for a line that is
 * not JSON, does not match its schema, repeats an id, refers to an unknown corpus item, gives a path
 * outside the suite's folder, or names a file that does not exist.
 */
export async function loadJsonlSuite({
  file,
  name,
  baseCorpus = { images: [], videos: [], triples: [] },
  checkFiles = true,
}: LoadJsonlSuiteOptions): Promise<Suite> {
  const source = resolve(file);
  const root = dirname(source);
  const parsed = (await readJsonLines({ file: source, what: "Suite file" })).map(({ line, value }) =>
    parseLine(value, { file: source, line }),
  );
  const files = referencedFiles({ root });

  const corpusIds = new Map<string, string>();
  for (const item of [...baseCorpus.images, ...baseCorpus.videos, ...baseCorpus.triples]) {
    corpusIds.set(item.id, "the base corpus");
  }
  const claimCorpusId = (id: string, place: Place) => {
    const previous = corpusIds.get(id);
    if (previous !== undefined) {
      failAt(
        place,
        `field "id": corpus id ${JSON.stringify(id)} is already used by ${previous}; ids must be unique.`,
        {
          id,
        },
      );
    }
    corpusIds.set(id, `line ${place.line}`);
  };

  const images: CorpusImage[] = [...baseCorpus.images];
  const videos: CorpusVideo[] = [...baseCorpus.videos];
  const pendingTriples: Array<{ place: Place; value: z.output<typeof jsonlTripleSchema> }> = [];
  for (const line of parsed) {
    if (line.type === "case") continue;
    claimCorpusId(line.value.id, line.place);
    if (line.type === "image") {
      const { id, path, caption, metadata } = line.value;
      images.push({
        id,
        path: files.add({ path, place: line.place, field: "path" }),
        ...(caption === undefined ? {} : { caption }),
        metadata,
      });
    } else if (line.type === "video") {
      const { id, path, metadata, segments } = line.value;
      videos.push({ id, path: files.add({ path, place: line.place, field: "path" }), metadata, segments });
    } else {
      pendingTriples.push(line);
    }
  }
  const imageIds = new Set(images.map((image) => image.id));
  const videoIds = new Set(videos.map((video) => video.id));

  const imageRef = (ref: z.output<typeof jsonlImageRefSchema>, place: Place, field: string): ImageRef => {
    if (typeof ref === "string") return { kind: "file", path: files.add({ path: ref, place, field }) };
    if ("stored" in ref) return { kind: "stored", id: ref.stored };
    if (!imageIds.has(ref.corpus)) {
      failAt(
        place,
        `field ${JSON.stringify(field)}: ${JSON.stringify(ref.corpus)} is not an image of the corpus; allowed: the id of an image line or of the base corpus.`,
        { id: ref.corpus },
      );
    }
    return { kind: "corpus", id: ref.corpus };
  };

  const triples: CorpusTriple[] = [...baseCorpus.triples];
  for (const { place, value } of pendingTriples) {
    triples.push({
      id: value.id,
      image: imageRef(value.image, place, "image"),
      question: value.question,
      answer: value.answer,
      metadata: value.metadata,
    });
  }

  const caseIds = new Map<string, number | undefined>();
  const cases: AnswerCase[] = [];
  for (const line of parsed) {
    if (line.type !== "case") continue;
    cases.push(
      toAnswerCase({ value: line.value, place: line.place, caseIds, corpusIds, videoIds, imageRef }),
    );
  }

  if (checkFiles) await files.checkExist();
  return {
    name: name ?? basename(source, extname(source)),
    format: "loupe-jsonl",
    source,
    corpus: { images, videos, triples },
    cases,
  };
}

function toAnswerCase({
  value,
  place,
  caseIds,
  corpusIds,
  videoIds,
  imageRef,
}: {
  value: z.output<typeof jsonlCaseSchema>;
  place: Place;
  caseIds: Map<string, number | undefined>;
  corpusIds: ReadonlyMap<string, string>;
  videoIds: ReadonlySet<string>;
  imageRef: (ref: z.output<typeof jsonlImageRefSchema>, place: Place, field: string) => ImageRef;
}): AnswerCase {
  if (caseIds.has(value.id)) {
    failAt(
      place,
      `field "id": case id ${JSON.stringify(value.id)} is already used on line ${caseIds.get(value.id)}; ids must be unique.`,
      {
        id: value.id,
      },
    );
  }
  caseIds.set(value.id, place.line);
  if (value.answer !== undefined && value.answers !== undefined) {
    failAt(
      place,
      'fields "answer" and "answers" are both given; give "answer" (one) or "answers" (a set), not both.',
    );
  }
  const answers = value.answers ?? (value.answer === undefined ? [] : [value.answer]);
  if (value.unanswerable && answers.length > 0) {
    failAt(place, 'field "unanswerable" is true but the case gives answers; an unanswerable case has none.');
  }
  if (
    !value.unanswerable &&
    answers.length === 0 &&
    value.evidence.length === 0 &&
    value.segments.length === 0
  ) {
    failAt(
      place,
      'the case expects nothing; give "answer" or "answers", "evidence" or "segments", or set "unanswerable": true.',
    );
  }
  const history = value.history.map((turn, index) => ({
    role: turn.role,
    content: turn.content,
    images: turn.images.map((ref, position) => imageRef(ref, place, `history[${index}].images[${position}]`)),
  }));
  const images = value.images.map((ref, position) => imageRef(ref, place, `images[${position}]`));
  const attached = history.reduce((count, turn) => count + turn.images.length, 0) + images.length;
  value.evidence.forEach((id, position) => {
    const field = `evidence[${position}]`;
    const attachment = ATTACHMENT_ID.exec(id);
    if (attachment !== null) {
      if (Number(attachment[1]) > attached) {
        failAt(
          place,
          `field "${field}": ${id} names attached image ${attachment[1]}, but the conversation attaches ${attached}; allowed: att_1 to att_${attached}.`,
          { id },
        );
      }
      return;
    }
    if (!STORED_ID.test(id) && !corpusIds.has(id)) {
      failAt(
        place,
        `field "${field}": ${JSON.stringify(id)} is not a corpus id; allowed: an id of the corpus, a stored id (img_…, seg_…, tri_…, vid_…) or att_<n>.`,
        { id },
      );
    }
  });
  value.segments.forEach((segment, position) => {
    if (!videoIds.has(segment.videoId) && !/^vid_[A-Za-z0-9]+$/u.test(segment.videoId)) {
      failAt(
        place,
        `field "segments[${position}].videoId": ${JSON.stringify(segment.videoId)} is not a video of the corpus; allowed: a corpus video id or a stored vid_… id.`,
        { videoId: segment.videoId },
      );
    }
  });
  return {
    kind: "answer",
    id: value.id,
    tags: value.tags,
    question: value.question,
    images,
    history,
    answers,
    evidence: value.evidence,
    segments: value.segments,
    unanswerable: value.unanswerable,
  };
}
