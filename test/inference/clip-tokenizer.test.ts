/**
 * The CLIP tokenizer `npm run models:build` writes: CLIP's byte-pair vocabulary (fetched from the open_clip_torch
 * wheel on PyPI) turned into a `tokenizer.json` by models/build/build_pack.py, which first checks it against
 * CLIP's own algorithm; here Loupe's runtime and Python `tokenizers` must read the file the same way.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTokenizer, type TextTokenizer } from "../../src/inference/tokenizer.ts";
import { REPO_VENV_DIR } from "../helpers/milvus-lite.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..", "..");
const python = join(REPO_VENV_DIR, "bin", "python");
const bpe = join(root, ".tmp", "clip-bpe", "bpe_simple_vocab_16e6.txt.gz");

const TEXTS = [
  "a photo of a cat",
  "A large RED circle to the left of two small blue squares.",
  "Error E1234: connection refused (port 8080)",
  "naïve café — résumé, 東京タワー, emoji 🙂!",
  "it's what they'd've done, isn't it?",
  "   spaces\tand\nnewlines   ",
  "ERR_HEAP_EXHAUSTED_22 0x8007000e",
  "Привет, мир. 12345 + 678 = 13023",
  "<|startoftext|> literal specials <|endoftext|>",
  "the ".repeat(100).trim(),
];

describe("the CLIP tokenizer of models:build", () => {
  let dir: string;
  let tokenizer: TextTokenizer;
  let pythonIds: number[][];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loupe-clip-tokenizer-"));
    await run(python, [join(root, "models", "build", "fetch_bpe.py"), bpe]);
    // Writes tokenizer.json after comparing it with CLIP's own tokenizer; exits non-zero on any difference.
    await run(python, [
      join(root, "models", "build", "build_pack.py"),
      "--bpe",
      bpe,
      "--tokenizer-only",
      "--out",
      dir,
    ]);
    tokenizer = await loadTokenizer({
      path: join(dir, "tokenizer.json"),
      tokenizerConfig: { pad_token: "<|endoftext|>", model_max_length: 77 },
      maxLength: 77,
    });
    const { stdout } = await run(python, [
      "-c",
      "import json, sys\nfrom tokenizers import Tokenizer\n" +
        "t = Tokenizer.from_file(sys.argv[1])\n" +
        "print(json.dumps([t.encode(text).ids for text in json.loads(sys.argv[2])]))",
      join(dir, "tokenizer.json"),
      JSON.stringify(TEXTS),
    ]);
    pythonIds = JSON.parse(stdout) as number[][];
  }, 120_000);

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("has CLIP's vocabulary and known ids", () => {
    expect(tokenizer.tokenToId("<|startoftext|>")).toBe(49406);
    expect(tokenizer.tokenToId("<|endoftext|>")).toBe(49407);
    expect(tokenizer.encode({ text: "a photo of a cat" })).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
  });

  it("encodes every text as Python tokenizers does, cut to 77 tokens ending in end-of-text", () => {
    for (const [index, text] of TEXTS.entries()) {
      const ours = tokenizer.encode({ text });
      const theirs = pythonIds[index] ?? [];
      if (theirs.length <= 77) expect(ours, text).toEqual(theirs);
      else {
        expect(ours).toHaveLength(77);
        expect(ours.slice(0, 76)).toEqual(theirs.slice(0, 76));
        expect(ours[76]).toBe(49407);
      }
    }
  });
});
