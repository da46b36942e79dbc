/**
 * Suite loaders on small files in each format, written by the tests: Loupe's JSONL cases, Karpathy
 * caption JSON, VQAv2 questions and annotations, and Shapes World splits made by the real generator.
 */
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import { vqaAccuracy } from "../../../src/eval/metrics/vqa-accuracy.ts";
import { loadJsonlSuite } from "../../../src/eval/suite/loaders/jsonl-cases.ts";
import { loadKarpathySuite } from "../../../src/eval/suite/loaders/karpathy.ts";
import { loadShapesWorldSuite } from "../../../src/eval/suite/loaders/shapes-world.ts";
import { loadVqaV2Suite } from "../../../src/eval/suite/loaders/vqav2.ts";
import { countCases, type Suite } from "../../../src/eval/suite/suite.ts";
import { generateDataset } from "../../../src/synth/dataset.ts";

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "loupe-suite-"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function write(path: string, content: string | Uint8Array): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
  return path;
}

const jsonl = (lines: readonly unknown[]) => `${lines.map((line) => JSON.stringify(line)).join("\n")}\n`;

describe("Loupe JSONL cases", () => {
  let dir: string;

  beforeAll(async () => {
    dir = join(root, "jsonl");
    for (const file of [
      "images/red-car.jpg",
      "images/blue-car.jpg",
      "videos/street.mp4",
      "queries/dog.jpg",
    ]) {
      await write(join(dir, file), new Uint8Array([1, 2, 3]));
    }
  });

  /** Writes a suite whose lines follow a valid corpus and returns its path. */
  async function suiteWith(cases: readonly unknown[], name = "bad.jsonl"): Promise<string> {
    return write(
      join(dir, name),
      jsonl([
        { type: "image", id: "red-car", path: "images/red-car.jpg" },
        { type: "video", id: "street", path: "videos/street.mp4" },
        ...cases,
      ]),
    );
  }

  it("loads corpus lines and every kind of case", async () => {
    const file = await write(
      join(dir, "suite.jsonl"),
      [
        JSON.stringify({ type: "image", id: "red-car", path: "images/red-car.jpg", caption: "a red car" }),
        JSON.stringify({ type: "image", id: "blue-car", path: "images/blue-car.jpg", metadata: { lot: 2 } }),
        "",
        JSON.stringify({
          type: "video",
          id: "street",
          path: "videos/street.mp4",
          segments: [{ start: 0, end: 4, label: "car passes" }],
        }),
        JSON.stringify({
          type: "triple",
          id: "car-color",
          image: { corpus: "red-car" },
          question: "What color is the car?",
          answer: "red",
        }),
        JSON.stringify({
          id: "q1",
          question: "What color is the car?",
          answers: ["red", "dark red"],
          evidence: ["red-car"],
          tags: ["color"],
        }),
        JSON.stringify({
          id: "q2",
          question: "When does the car pass?",
          segments: [{ videoId: "street", start: 0, end: 4 }],
        }),
        JSON.stringify({
          type: "case",
          id: "q3",
          question: "And this one?",
          images: ["queries/dog.jpg", { stored: "img_0123abcd" }],
          history: [
            { role: "user", content: "Look at this car", images: [{ corpus: "blue-car" }] },
            { role: "assistant", content: "A blue car." },
          ],
          answer: "a dog",
          evidence: ["att_1", "att_3", "seg_77aa"],
        }),
        JSON.stringify({
          id: "q4",
          question: "Who painted the car?",
          unanswerable: true,
          tags: ["unanswerable"],
        }),
      ].join("\n"),
    );
    const suite = await loadJsonlSuite({ file });
    expect(suite).toMatchObject({ name: "suite", format: "loupe-jsonl", source: file });
    expect(suite.corpus.images).toEqual([
      { id: "red-car", path: join(dir, "images/red-car.jpg"), caption: "a red car", metadata: {} },
      { id: "blue-car", path: join(dir, "images/blue-car.jpg"), metadata: { lot: 2 } },
    ]);
    expect(suite.corpus.videos[0]).toMatchObject({
      id: "street",
      segments: [{ start: 0, end: 4, label: "car passes" }],
    });
    expect(suite.corpus.triples[0]).toMatchObject({
      id: "car-color",
      image: { kind: "corpus", id: "red-car" },
    });
    expect(suite.cases.map((item) => item.id)).toEqual(["q1", "q2", "q3", "q4"]);
    expect(suite.cases[0]).toEqual({
      kind: "answer",
      id: "q1",
      tags: ["color"],
      question: "What color is the car?",
      images: [],
      history: [],
      answers: ["red", "dark red"],
      evidence: ["red-car"],
      segments: [],
      unanswerable: false,
    });
    expect(suite.cases[2]).toMatchObject({
      answers: ["a dog"],
      images: [
        { kind: "file", path: join(dir, "queries/dog.jpg") },
        { kind: "stored", id: "img_0123abcd" },
      ],
      history: [
        { role: "user", images: [{ kind: "corpus", id: "blue-car" }] },
        { role: "assistant", images: [] },
      ],
    });
    expect(suite.cases[3]).toMatchObject({ unanswerable: true, answers: [] });
    expect(countCases(suite)).toEqual({ answer: 4 });
  });

  it("names the line, the field and what is allowed for malformed lines", async () => {
    const cases: Array<[unknown, RegExp]> = [
      [
        { id: "q", question: "?", anwser: "red" },
        /line 3: unknown field "anwser"; allowed fields: type, id, question, images/,
      ],
      [{ id: "q", question: "?", answers: "red" }, /line 3: field "answers": Invalid input: expected array/],
      [
        { id: "q", question: "?", answers: ["red", 4] },
        /line 3: field "answers\[1\]": Invalid input: expected string/,
      ],
      [{ id: "q", question: "  ", answer: "x" }, /line 3: field "question": must not be empty/],
      [
        { id: "q", question: "?", answer: "red", answers: ["red"] },
        /line 3: fields "answer" and "answers" are both given/,
      ],
      [
        { id: "q", question: "?", answer: "red", unanswerable: true },
        /line 3: field "unanswerable" is true but the case gives answers/,
      ],
      [{ id: "q", question: "?" }, /line 3: the case expects nothing; give "answer" or "answers"/],
      [
        { id: "q", question: "?", segments: [{ videoId: "street", start: 4, end: 4 }] },
        /line 3: field "segments\[0\]\.end": end must be greater than start/,
      ],
      [
        { id: "q", question: "?", segments: [{ videoId: "alley", start: 0, end: 4 }] },
        /line 3: field "segments\[0\]\.videoId": "alley" is not a video of the corpus; allowed: a corpus video id/,
      ],
      [
        { id: "q", question: "?", evidence: ["cat"] },
        /line 3: field "evidence\[0\]": "cat" is not a corpus id; allowed: an id of the corpus/,
      ],
      [
        { id: "q", question: "?", images: [{ corpus: "red-car" }], evidence: ["att_2"] },
        /line 3: field "evidence\[0\]": att_2 names attached image 2, but the conversation attaches 1; allowed: att_1 to att_1/,
      ],
      [
        { id: "q", question: "?", images: [{ stord: "img_1" }], answer: "x" },
        /line 3: field "images\[0\]": an image is a path relative/,
      ],
      [
        { id: "q", question: "?", images: [{ corpus: "dog" }], answer: "x" },
        /line 3: field "images\[0\]": "dog" is not an image of the corpus/,
      ],
      [
        { id: "q", question: "?", images: ["../outside.jpg"], answer: "x" },
        /line 3: field "images\[0\]": path "\.\.\/outside\.jpg" leaves/,
      ],
      [
        { id: "q", question: "?", images: ["/etc/passwd"], answer: "x" },
        /line 3: field "images\[0\]": path "\/etc\/passwd" is not allowed/,
      ],
      [
        { id: "q", question: "?", images: ["images/none.jpg"], answer: "x" },
        /line 3: field "images\[0\]": file .*none\.jpg does not exist/,
      ],
      [{ id: "img_1", question: "?", answer: "x" }, /line 3: field "id": must not start with img_/],
      [
        { type: "picture", id: "p", path: "images/red-car.jpg" },
        /line 3: field "type": "picture" is not a line type; allowed: case, image, video, triple/,
      ],
      [
        { type: "image", id: "red-car", path: "images/blue-car.jpg" },
        /line 3: field "id": corpus id "red-car" is already used by line 1/,
      ],
      [["not", "an", "object"], /line 3: each line must be a JSON object/],
    ];
    for (const [line, message] of cases) {
      const file = await suiteWith([line]);
      await expect(loadJsonlSuite({ file }), JSON.stringify(line)).rejects.toThrow(message);
    }
  });

  it("rejects repeated case ids, lines that are not JSON and missing files", async () => {
    const repeated = await suiteWith([
      { id: "q", question: "?", answer: "a" },
      { id: "q", question: "?", answer: "b" },
    ]);
    await expect(loadJsonlSuite({ file: repeated })).rejects.toThrow(
      /line 4: field "id": case id "q" is already used on line 3/,
    );
    const broken = await write(
      join(dir, "broken.jsonl"),
      '{"id":"q","question":"?","answer":"a"}\n{"id": "r",\n',
    );
    await expect(loadJsonlSuite({ file: broken })).rejects.toThrow(/broken\.jsonl line 2: not valid JSON/);
    await expect(loadJsonlSuite({ file: join(dir, "absent.jsonl") })).rejects.toThrow(
      /absent\.jsonl does not exist/,
    );
    const error = await loadJsonlSuite({ file: repeated }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).context).toMatchObject({ line: 4 });
  });

  it("lets cases refer to a base corpus and skips file checks on request", async () => {
    const file = await write(
      join(dir, "over-base.jsonl"),
      jsonl([{ id: "q", question: "Which shape?", images: ["not-written.jpg"], evidence: ["img-000001"] }]),
    );
    const baseCorpus = {
      images: [{ id: "img-000001", path: "/data/img-000001.png", metadata: {} }],
      videos: [],
      triples: [],
    };
    const suite = await loadJsonlSuite({ file, baseCorpus, checkFiles: false, name: "over" });
    expect(suite.name).toBe("over");
    expect(suite.corpus.images).toHaveLength(1);
    expect(suite.cases[0]).toMatchObject({ evidence: ["img-000001"] });
    await expect(loadJsonlSuite({ file, baseCorpus })).rejects.toThrow(/not-written\.jpg does not exist/);
  });
});

describe("Karpathy caption JSON", () => {
  let dir: string;
  const dataset = {
    dataset: "coco",
    images: [
      {
        filepath: "val2014",
        filename: "COCO_val2014_000000000042.jpg",
        imgid: 0,
        split: "test",
        cocoid: 42,
        sentids: [10, 11],
        sentences: [
          { tokens: ["a", "man"], raw: "A man riding a bike.", imgid: 0, sentid: 10 },
          { tokens: ["a", "bike"], raw: "A bike on a street.", imgid: 0, sentid: 11 },
        ],
      },
      {
        filepath: "train2014",
        filename: "COCO_train2014_000000000007.jpg",
        imgid: 1,
        split: "train",
        cocoid: 7,
        sentences: [{ raw: "Two dogs.", sentid: 12 }],
      },
      {
        filepath: "val2014",
        filename: "COCO_val2014_000000000043.jpg",
        imgid: 2,
        split: "test",
        cocoid: 43,
        sentences: [{ raw: "A cat on a mat.", sentid: 13 }],
      },
    ],
  };

  beforeAll(async () => {
    dir = join(root, "karpathy");
    for (const image of dataset.images)
      await write(join(dir, "coco", image.filepath, image.filename), new Uint8Array([1]));
  });

  it("turns each caption of the split into a text→image case over the split's images", async () => {
    const file = await write(join(dir, "dataset_coco.json"), JSON.stringify(dataset));
    const suite = await loadKarpathySuite({ file, imagesDir: join(dir, "coco") });
    expect(suite).toMatchObject({ name: "coco-test", format: "karpathy" });
    expect(suite.corpus.images.map((image) => image.id)).toEqual([
      "val2014/COCO_val2014_000000000042.jpg",
      "val2014/COCO_val2014_000000000043.jpg",
    ]);
    expect(suite.corpus.images[0]).toEqual({
      id: "val2014/COCO_val2014_000000000042.jpg",
      path: join(dir, "coco/val2014/COCO_val2014_000000000042.jpg"),
      metadata: { split: "test", dataset: "coco", cocoid: 42, imgid: 0 },
    });
    expect(suite.corpus.images[0]?.caption).toBeUndefined();
    expect(suite.cases).toEqual([
      expect.objectContaining({
        id: "s10",
        task: "text-to-image",
        query: { text: "A man riding a bike." },
        relevant: ["val2014/COCO_val2014_000000000042.jpg"],
      }),
      expect.objectContaining({ id: "s11", relevant: ["val2014/COCO_val2014_000000000042.jpg"] }),
      expect.objectContaining({
        id: "s13",
        query: { text: "A cat on a mat." },
        relevant: ["val2014/COCO_val2014_000000000043.jpg"],
      }),
    ]);
    const both = await loadKarpathySuite({
      file,
      imagesDir: join(dir, "coco"),
      splits: ["train", "test"],
      maxImages: 2,
    });
    expect(both.corpus.images.map((image) => image.metadata.cocoid)).toEqual([42, 7]);
  });

  it("reports malformed files, absent splits, escaping paths and missing images", async () => {
    const broken = structuredClone(dataset);
    (broken.images[2]?.sentences[0] as { raw?: unknown }).raw = 5;
    const brokenFile = await write(join(dir, "broken.json"), JSON.stringify(broken));
    await expect(loadKarpathySuite({ file: brokenFile, imagesDir: join(dir, "coco") })).rejects.toThrow(
      /broken\.json: field "images\[2\]\.sentences\[0\]\.raw": Invalid input: expected string/,
    );
    const file = await write(join(dir, "dataset.json"), JSON.stringify(dataset));
    await expect(loadKarpathySuite({ file, imagesDir: join(dir, "coco"), splits: ["val"] })).rejects.toThrow(
      /no images in split val; the file has splits test, train/,
    );
    const escaping = structuredClone(dataset);
    (escaping.images[0] as { filepath: string }).filepath = "../../..";
    const escapingFile = await write(join(dir, "escaping.json"), JSON.stringify(escaping));
    await expect(loadKarpathySuite({ file: escapingFile, imagesDir: join(dir, "coco") })).rejects.toThrow(
      /field "images\[0\]\.filename": path .* leaves/,
    );
    await expect(loadKarpathySuite({ file, imagesDir: dir })).rejects.toThrow(
      /field "images\[0\]\.filename": file .*COCO_val2014_000000000042\.jpg does not exist or is not a file \(2 files are missing in all\)/,
    );
    const notJson = await write(join(dir, "not.json"), "{");
    await expect(loadKarpathySuite({ file: notJson })).rejects.toThrow(/not\.json is not valid JSON/);
  });
});

describe("VQAv2 questions and annotations", () => {
  let dir: string;
  const humans = ["2", "2", "2", "two", "2", "2", "3", "2", "2", "2"];
  const questions = {
    data_subtype: "val2014",
    questions: [
      { image_id: 42, question: "How many dogs?", question_id: 420 },
      { image_id: 42, question: "Is it sunny?", question_id: 421 },
      { image_id: 7, question: "What color is the bus?", question_id: 70 },
    ],
  };
  const annotation = (
    questionId: number,
    imageId: number,
    answers: string[],
    answerType: string,
    questionType: string,
  ) => ({
    question_id: questionId,
    image_id: imageId,
    question_type: questionType,
    answer_type: answerType,
    multiple_choice_answer: answers[0],
    answers: answers.map((answer, index) => ({ answer, answer_confidence: "yes", answer_id: index + 1 })),
  });
  const annotations = {
    annotations: [
      annotation(420, 42, humans, "number", "how many"),
      annotation(
        421,
        42,
        Array.from({ length: 10 }, () => "yes"),
        "yes/no",
        "is it",
      ),
      annotation(
        70,
        7,
        Array.from({ length: 10 }, (_v, index) => (index < 6 ? "red" : "orange")),
        "other",
        "what color is the",
      ),
    ],
  };

  beforeAll(async () => {
    dir = join(root, "vqav2");
    for (const id of [42, 7]) {
      await write(
        join(dir, "val2014", `COCO_val2014_${String(id).padStart(12, "0")}.jpg`),
        new Uint8Array([1]),
      );
    }
  });

  it("loads one case per question with its 10 answers over the images asked about", async () => {
    const questionsFile = await write(join(dir, "questions.json"), JSON.stringify(questions));
    const annotationsFile = await write(join(dir, "annotations.json"), JSON.stringify(annotations));
    const suite = await loadVqaV2Suite({ questionsFile, annotationsFile, imagesDir: join(dir, "val2014") });
    expect(suite).toMatchObject({ name: "vqav2-val2014", format: "vqav2" });
    expect(suite.corpus.images).toEqual([
      {
        id: "coco-42",
        path: join(dir, "val2014/COCO_val2014_000000000042.jpg"),
        metadata: { imageId: 42, subtype: "val2014" },
      },
      {
        id: "coco-7",
        path: join(dir, "val2014/COCO_val2014_000000000007.jpg"),
        metadata: { imageId: 7, subtype: "val2014" },
      },
    ]);
    expect(suite.cases[0]).toEqual({
      kind: "vqa",
      id: "q420",
      tags: ["number", "how many"],
      image: { kind: "corpus", id: "coco-42" },
      question: "How many dogs?",
      answers: humans,
      questionType: "how many",
      answerType: "number",
    });
    expect(countCases(suite)).toEqual({ vqa: 3 });
    // The answers feed the official accuracy: 8 of 10 humans said "2" → 1.
    const first = suite.cases[0];
    if (first?.kind !== "vqa") throw new Error("expected a VQA case");
    expect(vqaAccuracy({ prediction: "2", references: first.answers })).toBe(1);
    const limited = await loadVqaV2Suite({
      questionsFile,
      annotationsFile,
      imagesDir: join(dir, "val2014"),
      maxQuestions: 1,
    });
    expect(limited.cases).toHaveLength(1);
    expect(limited.corpus.images).toHaveLength(1);
  });

  it("reports questions without annotations, mismatched images, empty answers and missing subtypes", async () => {
    const imagesDir = join(dir, "val2014");
    const questionsFile = await write(join(dir, "q.json"), JSON.stringify(questions));
    const missing = await write(
      join(dir, "a-missing.json"),
      JSON.stringify({ annotations: annotations.annotations.slice(0, 2) }),
    );
    await expect(loadVqaV2Suite({ questionsFile, annotationsFile: missing, imagesDir })).rejects.toThrow(
      /question 70 \(.*questions\[2\]\) has no annotation/,
    );
    const otherImage = structuredClone(annotations);
    (otherImage.annotations[1] as { image_id: number }).image_id = 99;
    const otherFile = await write(join(dir, "a-other.json"), JSON.stringify(otherImage));
    await expect(loadVqaV2Suite({ questionsFile, annotationsFile: otherFile, imagesDir })).rejects.toThrow(
      /field "annotations\[1\]\.image_id": question 421 is about image 42 in the questions file but 99 here/,
    );
    const empty = structuredClone(annotations);
    (empty.annotations[0] as { answers: unknown[] }).answers = [];
    const emptyFile = await write(join(dir, "a-empty.json"), JSON.stringify(empty));
    await expect(loadVqaV2Suite({ questionsFile, annotationsFile: emptyFile, imagesDir })).rejects.toThrow(
      /field "annotations\[0\]\.answers": must hold at least one answer/,
    );
    const noSubtype = await write(
      join(dir, "q-nosub.json"),
      JSON.stringify({ questions: questions.questions }),
    );
    const annotationsFile = await write(join(dir, "a.json"), JSON.stringify(annotations));
    await expect(loadVqaV2Suite({ questionsFile: noSubtype, annotationsFile, imagesDir })).rejects.toThrow(
      /field "data_subtype" is missing/,
    );
    const named = await loadVqaV2Suite({
      questionsFile: noSubtype,
      annotationsFile,
      imagesDir,
      subtype: "val2014",
    });
    expect(named.cases).toHaveLength(3);
    await expect(loadVqaV2Suite({ questionsFile, annotationsFile, imagesDir: dir })).rejects.toThrow(
      /COCO_val2014_000000000042\.jpg does not exist/,
    );
  });
});

describe("Shapes World splits", () => {
  let pngDir: string;
  let pngSuite: Suite;

  beforeAll(async () => {
    pngDir = join(root, "shapes-png");
    await generateDataset({
      outDir: pngDir,
      seed: 5,
      images: 8,
      size: 64,
      format: "png",
      videos: 1,
      clipsPerVideo: 3,
      concurrency: 2,
    });
    pngSuite = await loadShapesWorldSuite({ dir: pngDir });
  });

  it("loads corpus and cases that agree with the manifest", async () => {
    const manifest = JSON.parse(await readFile(join(pngDir, "manifest.json"), "utf8"));
    expect(pngSuite.name).toBe("shapes-world-5-png-64");
    expect(pngSuite.corpus.images).toHaveLength(manifest.counts.images);
    expect(pngSuite.corpus.images[0]).toMatchObject({
      id: "img-000001",
      path: join(pngDir, "images/img-000001.png"),
    });
    expect(pngSuite.corpus.images.every((image) => image.caption === undefined)).toBe(true);
    expect(pngSuite.corpus.triples).toHaveLength(manifest.counts.triples);
    expect(pngSuite.corpus.videos).toHaveLength(1);
    expect(pngSuite.corpus.videos[0]?.segments).toHaveLength(3);
    const counts = countCases(pngSuite);
    expect(counts["retrieval:text-to-image"]).toBe(
      manifest.counts.partialQueries + manifest.counts.descriptionQueries,
    );
    expect(counts.vqa).toBe(manifest.counts.vqa);
    expect(counts["triple-probe"]).toBe(manifest.counts.triples);
    expect(counts["retrieval:image-to-image"]).toBe(manifest.counts.triples);
    expect(counts["retrieval:text-to-video-segment"]).toBeGreaterThanOrEqual(3);
    expect(counts.detection).toBe(manifest.counts.images);
    expect(counts.region).toBe(manifest.counts.images);
  });

  it("boxes each scene object by its bounding circle's square and targets every object a description fits", async () => {
    const scenes = (await readFile(join(pngDir, "scenes.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map(
        (line) =>
          JSON.parse(line) as {
            id: string;
            scene: {
              objects: Array<{ shape: string; color: string; size: string; x: number; y: number; r: number }>;
            };
          },
      );
    const first = scenes[0] as (typeof scenes)[number];
    const detection = pngSuite.cases.find((item) => item.kind === "detection" && item.image === first.id);
    expect(detection).toMatchObject({
      objects: first.scene.objects.map((object) => ({
        label: object.shape,
        attributes: { color: object.color, size: object.size },
        box: {
          x0: object.x - object.r,
          y0: object.y - object.r,
          x1: object.x + object.r,
          y1: object.y + object.r,
        },
      })),
      counts: expect.arrayContaining([{ expected: first.scene.objects.length }]),
    });
    for (const item of pngSuite.cases) {
      if (item.kind !== "region") continue;
      const fits = scenes.flatMap((scene) =>
        scene.scene.objects
          .filter((object) => item.text.endsWith(`${object.color} ${object.shape}`))
          .filter((object) => !/ (small|large) /u.test(item.text) || item.text.includes(` ${object.size} `))
          .map(() => scene.id),
      );
      expect(item.targets.map((target) => target.image)).toEqual(fits);
      expect(item.targets.length).toBeGreaterThan(0);
    }
  });

  it("keeps every reference inside the suite", () => {
    const imageIds = new Set(pngSuite.corpus.images.map((image) => image.id));
    const tripleIds = new Set(pngSuite.corpus.triples.map((triple) => triple.id));
    const video = pngSuite.corpus.videos[0];
    for (const item of pngSuite.cases) {
      if (item.kind === "retrieval" && item.task !== "text-to-video-segment") {
        expect(item.relevant.length).toBeGreaterThan(0);
        for (const id of item.relevant) expect(imageIds.has(id)).toBe(true);
      }
      if (item.kind === "retrieval" && item.task === "text-to-video-segment") {
        expect(item.query.text).toBeTruthy();
        for (const segment of item.segments) {
          expect(segment.videoId).toBe(video?.id);
          expect(video?.segments).toContainEqual(
            expect.objectContaining({ start: segment.start, end: segment.end }),
          );
        }
      }
      if (item.kind === "vqa") {
        expect(item.image.kind === "corpus" && imageIds.has(item.image.id)).toBe(true);
        expect(item.answers).toHaveLength(1);
        expect(item.tags[0]).toBe(item.questionType);
      }
      if (item.kind === "triple-probe") {
        expect(tripleIds.has(item.tripleId)).toBe(true);
        expect(item.image).toMatchObject({
          kind: "file",
          path: expect.stringContaining(join(pngDir, "twins")),
        });
      }
    }
  });

  it("reads other seeds, sizes and formats", async () => {
    const dir = join(root, "shapes-webp");
    await generateDataset({ outDir: dir, seed: 11, images: 4, size: 96, format: "webp", concurrency: 2 });
    const suite = await loadShapesWorldSuite({ dir, name: "webp" });
    expect(suite.name).toBe("webp");
    expect(suite.corpus.images[0]?.path).toBe(join(dir, "images/img-000001.webp"));
    expect(suite.corpus.videos).toEqual([]);
    expect(countCases(suite)["retrieval:text-to-video-segment"]).toBeUndefined();
  });

  it("rejects other specs, truncated files, broken lines and missing media", async () => {
    const dir = join(root, "shapes-broken");
    await generateDataset({ outDir: dir, seed: 2, images: 3, size: 64, format: "jpeg", concurrency: 2 });
    const manifestFile = join(dir, "manifest.json");
    const manifest = await readFile(manifestFile, "utf8");
    await writeFile(manifestFile, manifest.replace('"shapes-world/1"', '"shapes-world/9"'));
    await expect(loadShapesWorldSuite({ dir })).rejects.toThrow(
      /field "spec": "shapes-world\/9" is not supported/,
    );
    await writeFile(manifestFile, manifest);

    const scenesFile = join(dir, "scenes.jsonl");
    const scenes = await readFile(scenesFile, "utf8");
    await writeFile(scenesFile, scenes.split("\n").slice(0, 2).join("\n"));
    await expect(loadShapesWorldSuite({ dir })).rejects.toThrow(
      /scenes\.jsonl: has 2 lines but the manifest counts 3/,
    );
    const lines = scenes.trimEnd().split("\n");
    lines[1] = JSON.stringify({ ...JSON.parse(lines[1] ?? "{}"), file: 12 });
    await writeFile(scenesFile, `${lines.join("\n")}\n`);
    await expect(loadShapesWorldSuite({ dir })).rejects.toThrow(
      /scenes\.jsonl line 2: field "file": Invalid input: expected string/,
    );
    await writeFile(scenesFile, scenes);

    await unlink(join(dir, "images/img-000002.jpg"));
    await expect(loadShapesWorldSuite({ dir })).rejects.toThrow(
      /scenes\.jsonl line 2: field "file": file .*img-000002\.jpg does not exist/,
    );
    await expect(loadShapesWorldSuite({ dir, checkFiles: false })).resolves.toMatchObject({
      format: "shapes-world",
    });
    await expect(loadShapesWorldSuite({ dir: join(root, "nowhere") })).rejects.toThrow(
      /manifest .*does not exist/,
    );
  });
});
