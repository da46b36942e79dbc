import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelPackError } from "../../src/errors.ts";
import { verifyManifest, writeManifest } from "../../src/inference/manifest.ts";
import { loadModelPack, readModelPackInfo } from "../../src/inference/model-pack.ts";
import { manifestSchema } from "../../src/inference/pack-config.ts";
import { readPackVocabulary, VOCABULARY_FILE } from "../../src/inference/vocabulary.ts";
import { ACTION_VERBS, ACTIONS, COLORS, SHAPES, SIZES } from "../../src/synth/domain.ts";
import { PHRASING } from "../../src/synth/phrasing.ts";

const fixtures = join(import.meta.dirname, "fixtures");
const tinyPack = join(fixtures, "tiny-pack");
const shippedPack = join(import.meta.dirname, "..", "..", "models", "shapes-world-tiny");

const validVocabulary = {
  version: 1,
  colors: ["red", "blue"],
  shapes: [{ name: "box", plural: "boxes" }],
  sizes: [{ name: "small", synonyms: ["tiny"] }, { name: "large" }],
  actions: [
    { name: "spinning", verb: "spin", patterns: ["\\bspin(s|ning)?\\b"] },
    { name: "moving left", verb: "move left", cues: [["move", "moves"], ["left"]] },
  ],
};

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "loupe-vocabulary-test-"));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A copy of the tiny fixture pack with `vocabulary.json` set to `content`, its manifest rewritten. */
async function packWithVocabulary(name: string, content: unknown): Promise<string> {
  const dir = join(scratch, name);
  await cp(tinyPack, dir, { recursive: true });
  const text = typeof content === "string" ? content : JSON.stringify(content);
  await writeFile(join(dir, VOCABULARY_FILE), text);
  await writeManifest({ dir });
  return dir;
}

async function vocabularyError(content: unknown): Promise<ModelPackError> {
  const dir = await packWithVocabulary(`bad-${Math.random().toString(36).slice(2)}`, content);
  const error = await readModelPackInfo({ dir }).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(ModelPackError);
  const packError = error as ModelPackError;
  expect(packError.message).toContain("Model pack file vocabulary.json");
  expect(packError.message).toMatch(
    /Correct the file \(models\/README\.md describes its format\) or re-export/,
  );
  expect(packError.context).toMatchObject({ file: VOCABULARY_FILE });
  return packError;
}

describe("the shipped pack's vocabulary", () => {
  it("is Shapes World's: its colors, shapes and plurals, sizes, and actions with their verbs", async () => {
    const vocabulary = await readPackVocabulary({ dir: shippedPack });
    expect(vocabulary?.colors).toEqual([...COLORS]);
    expect(vocabulary?.shapes).toEqual(
      SHAPES.map((shape) => ({ name: shape, plural: (PHRASING.plurals as Record<string, string>)[shape] })),
    );
    expect(vocabulary?.sizes.map((size) => size.name)).toEqual([...SIZES]);
    expect(vocabulary?.actions.map((action) => [action.name, action.verb])).toEqual(
      ACTIONS.map((action) => [action, ACTION_VERBS[action]]),
    );
  });

  it("is read by the light pack reader and listed, with its hash, in the pack's manifest", async () => {
    const info = await readModelPackInfo({ dir: shippedPack });
    expect(info.vocabulary?.colors).toHaveLength(6);
    const manifest = manifestSchema.parse(
      JSON.parse(await readFile(join(shippedPack, "manifest.json"), "utf8")),
    );
    expect(manifest.files[VOCABULARY_FILE]).toMatch(/^[0-9a-f]{64}$/);
    const checked: string[] = [];
    await verifyManifest({ dir: shippedPack, manifest, onFile: (file) => checked.push(file) });
    expect(checked).toContain(VOCABULARY_FILE);
  });
});

describe("loading a pack's vocabulary", () => {
  it("is undefined for a pack without vocabulary.json", async () => {
    expect(await readPackVocabulary({ dir: tinyPack })).toBeUndefined();
    expect((await readModelPackInfo({ dir: tinyPack })).vocabulary).toBeUndefined();
    const pack = await loadModelPack({ dir: tinyPack, sessions: "lazy" });
    try {
      expect(pack.vocabulary).toBeUndefined();
    } finally {
      await pack.close();
    }
  });

  it("reads a valid file onto the pack, with absent lists and fields defaulted", async () => {
    const dir = await packWithVocabulary("valid", validVocabulary);
    const pack = await loadModelPack({ dir, sessions: "lazy" });
    try {
      expect(pack.vocabulary).toEqual({
        ...validVocabulary,
        sizes: [
          { name: "small", synonyms: ["tiny"] },
          { name: "large", synonyms: [] },
        ],
        actions: [
          { name: "spinning", verb: "spin", patterns: ["\\bspin(s|ning)?\\b"], cues: [] },
          { name: "moving left", verb: "move left", patterns: [], cues: [["move", "moves"], ["left"]] },
        ],
      });
      expect(pack.info.vocabulary).toBe(pack.vocabulary);
    } finally {
      await pack.close();
    }
    expect(await readPackVocabulary({ dir: await packWithVocabulary("minimal", { version: 1 }) })).toEqual({
      version: 1,
      colors: [],
      shapes: [],
      sizes: [],
      actions: [],
    });
  });

  it("checks vocabulary.json against the manifest like every other file", async () => {
    const dir = await packWithVocabulary("changed", validVocabulary);
    await writeFile(join(dir, VOCABULARY_FILE), JSON.stringify({ ...validVocabulary, colors: ["green"] }));
    const changed = await loadModelPack({ dir }).catch((caught: unknown) => caught);
    expect(changed).toBeInstanceOf(ModelPackError);
    expect((changed as ModelPackError).message).toContain("vocabulary.json does not match manifest.json");

    const unlisted = join(scratch, "unlisted");
    await cp(tinyPack, unlisted, { recursive: true });
    await writeFile(join(unlisted, VOCABULARY_FILE), JSON.stringify(validVocabulary));
    const error = await loadModelPack({ dir: unlisted }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelPackError);
    expect((error as ModelPackError).message).toMatch(/manifest\.json does not list vocabulary\.json/);
  });
});

describe("a malformed vocabulary.json", () => {
  it("that is not JSON", async () => {
    const error = await vocabularyError('{ "version": 1, "colors": [');
    expect(error.message).toMatch(/vocabulary\.json is not valid JSON \(.+\)/);
  });

  it("with a word that is not one lowercase word", async () => {
    const error = await vocabularyError({ version: 1, colors: ["red", "Light Blue"] });
    expect(error.message).toContain('colors.1: "Light Blue" is not one lowercase word (a-z, 0-9)');
  });

  it("with a pattern that is not a regular expression", async () => {
    const error = await vocabularyError({
      version: 1,
      actions: [{ name: "spinning", verb: "spin", patterns: ["\\bspin(s|ning\\b"] }],
    });
    expect(error.message).toContain(
      'actions.0.patterns.0: "\\\\bspin(s|ning\\\\b" is not a valid regular expression',
    );
  });

  it("with an unknown version, an unknown field, or an action nothing can name", async () => {
    expect((await vocabularyError({ version: 2 })).message).toContain(
      "version: version 2 is not one this Loupe reads; it reads version 1",
    );
    expect((await vocabularyError({ version: 1, colours: ["red"] })).message).toMatch(
      /Unrecognized key: "colours"/,
    );
    expect(
      (await vocabularyError({ version: 1, actions: [{ name: "spinning", verb: "spin" }] })).message,
    ).toContain('action "spinning" has neither patterns nor cues');
  });

  it("with a word of two meanings", async () => {
    const error = await vocabularyError({
      version: 1,
      colors: ["orange"],
      shapes: [{ name: "orange", plural: "oranges" }],
    });
    expect(error.message).toContain('shapes.0.name: "orange" is already declared at colors.0');
  });
});
