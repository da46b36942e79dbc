/** Answer scores of eval cases against hand-computed values. */
import { describe, expect, it } from "vitest";
import {
  abstentionScores,
  type CitedItem,
  citationScores,
  citedItems,
  containsAnswer,
  exactMatch,
  groundedness,
  meanOfDefined,
  normalizeAnswerText,
  pooledGroundedness,
  scoreAnswer,
  summarizeTokenUsage,
} from "../../../src/eval/metrics/answer-metrics.ts";
import type { ChatResult, Citation, Evidence } from "../../../src/rag/types.ts";

function citation(
  id: string,
  kind: Citation["kind"],
  start: number | null = null,
  end: number | null = null,
): Citation {
  return { id, kind, mediaUrl: null, thumbnailUrl: null, start, end, question: null, answer: null, score: 1 };
}

function evidence(cited: Citation, videoId?: string): Evidence {
  return {
    citation: cited,
    attachment: false,
    text: "",
    findings: [],
    ...(videoId === undefined ? {} : { videoId }),
  };
}

type Scored = Pick<ChatResult, "answer" | "answered" | "citations" | "evidence" | "verification">;

function result(overrides: Partial<Scored>): Scored {
  return {
    answer: "",
    answered: true,
    citations: [],
    evidence: [],
    verification: { checked: 0, confirmed: 0, contradictions: [], corrected: false },
    ...overrides,
  };
}

describe("normalizeAnswerText", () => {
  it("drops citation markers and markdown, then applies the VQAv2 rules", () => {
    expect(normalizeAnswerText("There are **three** circles [img_ab12].")).toBe("there are 3 circles");
    expect(normalizeAnswerText("Color: red [att_1, seg_9f].")).toBe("color red");
    expect(normalizeAnswerText("I don’t know")).toBe("i don't know");
  });
});

describe("exactMatch and containsAnswer", () => {
  it("matches normalized answers exactly", () => {
    expect(exactMatch({ answer: "Three.", references: ["3"] })).toBe(true);
    expect(exactMatch({ answer: "The red one [img_1]", references: ["blue", "red one"] })).toBe(true);
    expect(exactMatch({ answer: "3 circles", references: ["3"] })).toBe(false);
  });

  it("finds a reference as whole words in the answer", () => {
    expect(containsAnswer({ answer: "There are three circles [img_1].", references: ["3"] })).toBe(true);
    expect(containsAnswer({ answer: "There are 13 circles.", references: ["3"] })).toBe(false);
    expect(containsAnswer({ answer: "It's a large red circle", references: ["Red circle"] })).toBe(true);
    expect(containsAnswer({ answer: "the", references: ["the"] })).toBe(false);
    expect(containsAnswer({ answer: "anything", references: [] })).toBe(false);
  });
});

describe("citations", () => {
  it("joins cited segments with their video ids and drops repeated citations", () => {
    const segment = citation("seg_1", "video_segment", 0, 2);
    const items = citedItems({
      citations: [citation("img_a", "image"), segment, citation("img_a", "image")],
      evidence: [evidence(segment, "vid_x"), evidence(citation("img_a", "image"))],
    });
    expect(items).toEqual([
      { id: "img_a", kind: "image", start: null, end: null },
      { id: "seg_1", kind: "video_segment", videoId: "vid_x", start: 0, end: 2 },
    ]);
  });

  it("scores ids and segment hits against the expected evidence", () => {
    const cited: CitedItem[] = [
      { id: "img_a", kind: "image", start: null, end: null },
      { id: "img_b", kind: "image", start: null, end: null },
      { id: "seg_1", kind: "video_segment", videoId: "vid_x", start: 0, end: 2 },
      { id: "seg_2", kind: "video_segment", videoId: "vid_x", start: 10, end: 12 },
    ];
    // img_a is expected; seg_1 hits [0, 2.5] with IoU 2/2.5 = 0.8. Correct 2 of 4 cited, 2 of 3 expected.
    expect(
      citationScores({
        cited,
        expectedIds: ["img_a", "img_c"],
        expectedSegments: [{ videoId: "vid_x", start: 0, end: 2.5 }],
      }),
    ).toEqual({ precision: 0.5, recall: 2 / 3, cited: 4, expected: 3, correct: 2 });
  });

  it("counts a second segment on the same expected segment as wrong", () => {
    const cited: CitedItem[] = [
      { id: "seg_1", kind: "video_segment", videoId: "v", start: 0, end: 2 },
      { id: "seg_2", kind: "video_segment", videoId: "v", start: 0, end: 2.2 },
    ];
    expect(citationScores({ cited, expectedSegments: [{ videoId: "v", start: 0, end: 2 }] })).toMatchObject({
      precision: 0.5,
      recall: 1,
    });
  });

  it("leaves precision undefined without citations and recall undefined without expectations", () => {
    expect(citationScores({ cited: [], expectedIds: ["img_a"] })).toMatchObject({
      precision: null,
      recall: 0,
    });
    const cited: CitedItem[] = [{ id: "img_a", kind: "image", start: null, end: null }];
    expect(citationScores({ cited })).toMatchObject({ precision: 0, recall: null });
  });
});

describe("groundedness", () => {
  it("is confirmed / checked, null when nothing was checked, and pools over answers", () => {
    expect(groundedness({ checked: 4, confirmed: 3 })).toBe(0.75);
    expect(groundedness({ checked: 0, confirmed: 0 })).toBeNull();
    // (3 + 0 + 0) / (4 + 0 + 2) = 0.5
    expect(
      pooledGroundedness([
        { checked: 4, confirmed: 3 },
        { checked: 0, confirmed: 0 },
        { checked: 2, confirmed: 0 },
      ]),
    ).toEqual({ rate: 0.5, checked: 6, confirmed: 3 });
    expect(pooledGroundedness([]).rate).toBeNull();
  });
});

describe("abstentionScores", () => {
  it("gives precision and recall of abstaining on unanswerable cases", () => {
    const scores = abstentionScores({
      outcomes: [
        { unanswerable: true, abstained: true },
        { unanswerable: true, abstained: true },
        { unanswerable: true, abstained: false },
        { unanswerable: false, abstained: true },
        { unanswerable: false, abstained: false },
        { unanswerable: false, abstained: false },
      ],
    });
    // 3 abstentions, 2 on unanswerable cases; 3 unanswerable cases. P = R = F1 = 2/3.
    expect(scores).toMatchObject({ abstained: 3, unanswerable: 3, correct: 2 });
    expect(scores.precision).toBeCloseTo(2 / 3, 12);
    expect(scores.recall).toBeCloseTo(2 / 3, 12);
    expect(scores.f1).toBeCloseTo(2 / 3, 12);
  });

  it("leaves precision and F1 undefined when the system never abstains", () => {
    expect(abstentionScores({ outcomes: [{ unanswerable: true, abstained: false }] })).toEqual({
      precision: null,
      recall: 0,
      f1: null,
      abstained: 0,
      unanswerable: 1,
      correct: 0,
    });
  });
});

describe("summarizeTokenUsage", () => {
  it("sums the counts of answers an LLM wrote", () => {
    expect(
      summarizeTokenUsage({
        results: [
          { usage: { promptTokens: 100, completionTokens: 20 } },
          {},
          { usage: { promptTokens: 50, completionTokens: 30 } },
        ],
      }),
    ).toEqual({
      turns: 3,
      llmTurns: 2,
      promptTokens: 150,
      completionTokens: 50,
      totalTokens: 200,
      meanTokensPerLlmTurn: 100,
    });
  });
});

describe("scoreAnswer", () => {
  it("scores an answerable case", () => {
    const cited = citation("img_a", "image");
    const scores = scoreAnswer({
      result: result({
        answer: "It is red [img_a].",
        citations: [cited],
        evidence: [evidence(cited)],
        verification: { checked: 2, confirmed: 1, contradictions: [], corrected: false },
      }),
      expectation: { references: ["red"], expectedIds: ["img_a"], unanswerable: false },
    });
    expect(scores).toMatchObject({
      exactMatch: false,
      containsAnswer: true,
      groundedness: 0.5,
      abstained: false,
      abstentionCorrect: true,
    });
    expect(scores.citations).toMatchObject({ precision: 1, recall: 1 });
  });

  it("does not compare answers on an unanswerable case", () => {
    const scores = scoreAnswer({
      result: result({ answer: "The corpus does not show this.", answered: false }),
      expectation: { references: [], unanswerable: true },
    });
    expect(scores).toMatchObject({
      exactMatch: null,
      containsAnswer: null,
      abstained: true,
      abstentionCorrect: true,
    });
  });
});

describe("meanOfDefined", () => {
  it("averages booleans and numbers, skipping nulls", () => {
    expect(meanOfDefined([true, false, null, 1])).toEqual({ mean: 2 / 3, count: 3 });
    expect(meanOfDefined([null])).toEqual({ mean: null, count: 0 });
  });
});
