/**
 * The search service's modes over a recording stand-in store (the real store is tested in
 * search.int.test.ts): which store call each mode makes, with which text, phrases and ranker, and the
 * OCR lines each result carries.
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import type { OcrMetadata } from "../../src/media/ocr-lines.ts";
import { resolveSearchMode, type SearchModels, SearchService } from "../../src/search/index.ts";
import type { SearchHit, VectorStore } from "../../src/store/index.ts";
import type { HybridRanker } from "../../src/store/vector-store.ts";

const reading: OcrMetadata = {
  engine: "pp-ocrv4",
  width: 640,
  height: 400,
  minConfidence: 0.5,
  lines: [
    { text: "Activation failed", confidence: 0.99, box: [10, 10, 200, 20] },
    { text: "E1234: license expired", confidence: 0.97, box: [10, 40, 220, 20] },
  ],
};

function hit(id: string, score: number, kind: "image" | "triple" = "image"): SearchHit {
  const base = {
    id,
    tenant: "t",
    modelId: "m",
    mediaRef: "blob:x",
    source: "test",
    createdAt: 0,
    text: "",
    ocrText: "Activation failed\nE1234: license expired",
    metadata: { ocr: reading },
  };
  return {
    id,
    score,
    fields: kind === "triple" ? { ...base, kind, question: "q", answer: "a" } : { ...base, kind },
  } as SearchHit;
}

interface Call {
  method: string;
  request: Record<string, unknown>;
}

function recordingStore(calls: Call[]): VectorStore {
  const record = (method: string) => async (request: Record<string, unknown>) => {
    calls.push({ method, request });
    return [
      hit(
        `img_${method}`,
        method === "textSearch" ? 7.5 : 0.5,
        request.kind === "triple" ? "triple" : "image",
      ),
    ];
  };
  return {
    search: record("search"),
    textSearch: record("textSearch"),
    hybridSearch: record("hybridSearch"),
  } as unknown as VectorStore;
}

function service(calls: Call[], ranker?: HybridRanker): SearchService {
  const embedded: string[] = [];
  const models = {
    modelId: "m",
    textEmbedder: {
      embed: async ({ texts }: { texts: string[] }) => {
        embedded.push(...texts);
        return texts.map(() => new Float32Array([1, 0]));
      },
    },
    imageEmbedder: { embed: async () => [new Float32Array([0, 1])] },
  } as unknown as SearchModels;
  return new SearchService({
    store: recordingStore(calls),
    models,
    urls: { media: (id) => `/m/${id}`, thumbnail: (id) => `/t/${id}` },
    ...(ranker === undefined ? {} : { ranker }),
  });
}

describe("resolveSearchMode", () => {
  it("defaults to hybrid with text and dense for an image alone", () => {
    expect(resolveSearchMode({ mode: undefined, hasText: true, hasImage: false })).toBe("hybrid");
    expect(resolveSearchMode({ mode: undefined, hasText: true, hasImage: true })).toBe("hybrid");
    expect(resolveSearchMode({ mode: undefined, hasText: false, hasImage: true })).toBe("dense");
  });

  it("refuses text and hybrid without text, text with an image, and unknown modes, saying what to do", () => {
    expect(() => resolveSearchMode({ mode: "text", hasText: false, hasImage: true })).toThrow(
      /mode "text" .* needs a text query/,
    );
    expect(() => resolveSearchMode({ mode: "text", hasText: true, hasImage: true })).toThrow(
      /drop the image/,
    );
    expect(() => resolveSearchMode({ mode: "hybrid", hasText: false, hasImage: true })).toThrow(
      /use mode "dense" for an image alone/,
    );
    expect(() => resolveSearchMode({ mode: "bm25", hasText: true, hasImage: false })).toThrow(
      ValidationError,
    );
  });
});

describe("SearchService modes", () => {
  it("text mode: BM25 with the quoted phrases, no embedding, textMatches on every result", async () => {
    const calls: Call[] = [];
    const { items } = await service(calls).search({
      tenant: "t",
      text: 'which one says "license expired"?',
      mode: "text",
      kinds: ["image"],
      topK: 3,
    });
    expect(calls).toEqual([
      {
        method: "textSearch",
        request: {
          kind: "image",
          tenant: "t",
          text: "which one says license expired ?",
          phrases: ["license expired"],
          topK: 3,
        },
      },
    ]);
    expect(items[0]?.textMatches).toEqual([
      {
        line: 1,
        text: "E1234: license expired",
        box: [10, 40, 220, 20],
        confidence: 0.97,
        matched: ["license expired", "license", "expired"],
      },
    ]);
    expect(items[0]?.ocrText).toBe("Activation failed\nE1234: license expired");
  });

  it("default for text is hybrid with the configured ranker, per vector field for triples", async () => {
    const calls: Call[] = [];
    const ranker: HybridRanker = { type: "weighted", dense: 0.3, text: 0.7 };
    await service(calls, ranker).search({
      tenant: "t",
      text: "license expired",
      kinds: ["image", "triple"],
      topK: 2,
    });
    expect(calls.map((call) => call.method)).toEqual(["hybridSearch", "hybridSearch"]);
    const image = calls.find((call) => call.request.kind === "image")?.request;
    expect(image).toMatchObject({ text: "license expired", ranker, topK: 2 });
    expect(image?.phrases).toBeUndefined();
    expect(calls.find((call) => call.request.kind === "triple")?.request).toMatchObject({
      vectorField: "question_vector",
      text: "license expired",
    });
  });

  it("dense mode and image-only queries call the dense search only", async () => {
    const calls: Call[] = [];
    const search = service(calls);
    await search.search({ tenant: "t", text: '"license expired"', mode: "dense", kinds: ["image"] });
    await search.search({ tenant: "t", image: { bytes: new Uint8Array([1]) }, kinds: ["image"] });
    expect(calls.map((call) => call.method)).toEqual(["search", "search"]);
    expect(calls[0]?.request.phrases).toBeUndefined();
  });

  it("refuses mode text for an image query before touching the store", async () => {
    const calls: Call[] = [];
    await expect(
      service(calls).search({ tenant: "t", image: { bytes: new Uint8Array([1]) }, mode: "text" }),
    ).rejects.toThrow(ValidationError);
    expect(calls).toEqual([]);
  });

  it("hybrid with an identifier: items containing it first, then BM25's, then the rest, each tier scored below", async () => {
    const calls: Call[] = [];
    const store = {
      hybridSearch: async (request: Record<string, unknown>) => {
        calls.push({ method: "hybridSearch", request });
        const phrases = (request.phrases as string[] | undefined) ?? [];
        // Only img_code holds E1234; img_hub is what the embedding favours for any query.
        return phrases.includes("E1234")
          ? [hit("img_code", 0.02)]
          : [hit("img_hub", 0.0325), hit("img_code", 0.03), hit("img_other", 0.01)];
      },
      textSearch: async (request: Record<string, unknown>) => {
        calls.push({ method: "textSearch", request });
        // BM25 finds img_other by the rest of the query (the code itself misread by OCR there).
        return [hit("img_other", 9.5), hit("img_code", 7)];
      },
    } as unknown as VectorStore;
    const models = {
      modelId: "m",
      textEmbedder: {
        embed: async ({ texts }: { texts: string[] }) => texts.map(() => new Float32Array([1, 0])),
      },
      imageEmbedder: { embed: async () => [new Float32Array([0, 1])] },
    } as unknown as SearchModels;
    const search = new SearchService({
      store,
      models,
      urls: { media: (id) => `/m/${id}`, thumbnail: (id) => `/t/${id}` },
    });
    const { items } = await search.search({ tenant: "t", text: "error E1234", kinds: ["image"], topK: 3 });
    expect(calls.map((call) => [call.method, call.request.phrases])).toEqual([
      ["hybridSearch", ["E1234"]],
      ["textSearch", undefined],
      ["hybridSearch", undefined],
    ]);
    expect(items.map((item) => item.id)).toEqual(["img_code", "img_other", "img_hub"]);
    expect(items[0]?.score).toBeLessThanOrEqual(0.0325);
    expect(items[1]?.score).toBeLessThan(items[0]?.score ?? 0);
    expect(items[2]?.score).toBeLessThan(items[1]?.score ?? 0);

    // Enough exact matches: one search only.
    calls.length = 0;
    await search.search({ tenant: "t", text: "error E1234", kinds: ["image"], topK: 1 });
    expect(calls).toHaveLength(1);
  });
});
