/**
 * The chain takes its vocabulary from the model pack (or an explicit option): over a pack that declares
 * none, no question names anything it can read, and it still answers from retrieval, with the offline
 * composer or an LLM. Unit level: the store, search and towers are small fakes (the end-to-end behaviour
 * over the shipped pack is chain.int.test.ts's).
 */
import { describe, expect, it } from "vitest";
import { EMPTY_VOCABULARY, type PackVocabulary } from "../../src/inference/index.ts";
import { createLogger } from "../../src/logger.ts";
import { createLoupeChain, type LoupeChainOptions } from "../../src/rag/chain.ts";
import type { AnswerComposer, ComposeInput } from "../../src/rag/types.ts";
import type { SearchHit, StoredImage } from "../../src/store/index.ts";
import { shippedVocabulary } from "./pack-vocabulary.ts";

const vocabulary = await shippedVocabulary();

function storedImage(id: string): StoredImage {
  return {
    kind: "image",
    id,
    tenant: "default",
    modelId: "test-pack@1",
    mediaRef: `blob:${id}`,
    source: "upload",
    createdAt: 0,
    text: "",
    metadata: {},
    ocrText: "",
  };
}

const HITS: SearchHit<"image">[] = [
  { id: "img_aaaaaa111111", score: 0.42, fields: storedImage("img_aaaaaa111111") },
  { id: "img_bbbbbb222222", score: 0.31, fields: storedImage("img_bbbbbb222222") },
];

/** A chain over fakes; `embedded` collects the texts retrieval embeds. */
function chainOver({
  models,
  llm,
  chainVocabulary,
}: {
  models: { vocabulary: PackVocabulary | undefined };
  llm?: AnswerComposer;
  chainVocabulary?: PackVocabulary;
}) {
  const embedded: string[] = [];
  let encoded = 0;
  const fakeModels = {
    modelId: "test-pack@1",
    vqaHead: undefined,
    vocabulary: models.vocabulary,
    imageEmbedder: {
      // Distinct unit vectors, so no candidate is a near-duplicate of another.
      encode: async ({ images }: { images: readonly unknown[] }) => ({
        embeddings: images.map(() => {
          const vector = new Float32Array(8);
          vector[encoded++ % 8] = 1;
          return vector;
        }),
        tokens: images.map(() => ({ data: new Float32Array(4), dims: [1, 2, 2] })),
      }),
    },
    textEmbedder: {
      embed: async ({ texts }: { texts: readonly string[] }) =>
        texts.map(() => new Float32Array(8).fill(0.5)),
    },
  };
  const options = {
    search: {
      embedText: async (text: string) => {
        embedded.push(text);
        return new Float32Array(8).fill(0.5);
      },
      imageBytes: async () => new Uint8Array([1, 2, 3]),
      getItem: async () => {
        throw new Error("no item is named in these tests");
      },
      logitScale: async () => 100,
    },
    store: {
      search: async ({ kind }: { kind: string }) => (kind === "image" ? HITS : []),
    },
    models: fakeModels,
    media: { read: async () => new Uint8Array([1, 2, 3]) },
    urls: {
      media: (id: string) => `/v1/media/${id}`,
      thumbnail: (id: string) => `/v1/media/${id}/thumbnail`,
    },
    logger: createLogger({ level: "silent" }),
    config: { chatMaxTurns: 20, chatMaxImages: 8, maxImagePixels: 40_000_000 },
    ...(llm === undefined ? {} : { llm }),
    ...(chainVocabulary === undefined ? {} : { vocabulary: chainVocabulary }),
  };
  const chain = createLoupeChain(options as unknown as LoupeChainOptions);
  return { chain, embedded };
}

/** An LLM composer that cites the first piece of evidence it is given. */
function citingLlm(): AnswerComposer & { inputs: ComposeInput[] } {
  const inputs: ComposeInput[] = [];
  return {
    kind: "llm",
    model: "fake-llm",
    vision: false,
    inputs,
    async compose(input, onDelta) {
      inputs.push(input);
      const first = input.evidence[0]?.citation.id ?? "";
      const text = `The closest image is ${first} [${first}].`;
      onDelta(text);
      return { text, model: "fake-llm" };
    },
  };
}

const QUESTION = "Tell me the colour of the star";

describe("a chain over a pack that declares no vocabulary", () => {
  it("reads no intent, retrieves with the question as asked, and the offline composer answers from retrieval, saying nothing was checked", async () => {
    const { chain, embedded } = chainOver({ models: { vocabulary: undefined } });
    const result = await chain.invoke({ tenant: "default", question: QUESTION });
    expect(result.standaloneQuestion).toBe(QUESTION);
    expect(embedded).toEqual([QUESTION]);
    expect(result.evidence.map((entry) => entry.citation.id)).toEqual(HITS.map((hit) => hit.id));
    expect(result.evidence.every((entry) => entry.findings.length === 0)).toBe(true);
    expect(result.composer).toBe("offline");
    expect(result.answer).toBe(
      "The closest matches in the corpus by similarity alone (not checked) are img_aaaaaa111111 [img_aaaaaa111111], img_bbbbbb222222 [img_bbbbbb222222].",
    );
    expect(result).toMatchObject({ answered: true, confidence: 0.42 });
    expect(result.verification).toMatchObject({ checked: 0, contradictions: [] });
  });

  it("lets the LLM answer from the retrieved evidence, and reads no claims to verify", async () => {
    const llm = citingLlm();
    const { chain } = chainOver({ models: { vocabulary: undefined }, llm });
    const result = await chain.invoke({ tenant: "default", question: "Is the red star on the left?" });
    expect(llm.inputs[0]?.evidence.map((entry) => entry.citation.id)).toEqual(HITS.map((hit) => hit.id));
    expect(result.composer).toBe("llm");
    expect(result.answer).toBe("The closest image is img_aaaaaa111111 [img_aaaaaa111111].");
    expect(result.citations.map((citation) => citation.id)).toEqual(["img_aaaaaa111111"]);
    expect(result.answered).toBe(true);
    expect(result.verification.checked).toBe(0);
  });
});

describe("the chain's vocabulary", () => {
  it("is the pack's, unless the chain is given another", async () => {
    const fromPack = chainOver({ models: { vocabulary } });
    expect((await fromPack.chain.invoke({ tenant: "default", question: QUESTION })).standaloneQuestion).toBe(
      "What color is the star?",
    );
    const given = chainOver({ models: { vocabulary: undefined }, chainVocabulary: vocabulary });
    expect((await given.chain.invoke({ tenant: "default", question: QUESTION })).standaloneQuestion).toBe(
      "What color is the star?",
    );
    const overridden = chainOver({ models: { vocabulary }, chainVocabulary: EMPTY_VOCABULARY });
    expect(
      (await overridden.chain.invoke({ tenant: "default", question: QUESTION })).standaloneQuestion,
    ).toBe(QUESTION);
  });
});
