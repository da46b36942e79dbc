/** The shipped pack's vocabulary, read as the pack loader reads it, for tests of the chain's parsing steps. */
import path from "node:path";
import type { PackVocabulary } from "../../src/inference/index.ts";
import { readPackVocabulary } from "../../src/inference/vocabulary.ts";

/** The pack Loupe ships. */
export const SHIPPED_PACK = path.join(import.meta.dirname, "..", "..", "models", "shapes-world-tiny");

/** `vocabulary.json` of the shipped pack. */
export async function shippedVocabulary(): Promise<PackVocabulary> {
  const vocabulary = await readPackVocabulary({ dir: SHIPPED_PACK });
  if (vocabulary === undefined) throw new Error(`${SHIPPED_PACK} has no vocabulary.json`);
  return vocabulary;
}
