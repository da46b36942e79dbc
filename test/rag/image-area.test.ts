/**
 * Questions about a part of an image ("what is in the top-left?"): which part a question names, which
 * objects lie in it (by the centres of their boxes), the offline answer from the detection head's finding,
 * follow-ups that name only another part, and the disagreements between the detection head and the VQA
 * head that the verify step reports for the evidence an answer cites.
 */
import { describe, expect, it } from "vitest";
import { listObjects } from "../../src/rag/ground.ts";
import { areaNamed, areaPhrase, areaQuestion, IMAGE_AREAS, inArea } from "../../src/rag/image-area.ts";
import { renderEvidence } from "../../src/rag/llm-composer.ts";
import { composeOffline } from "../../src/rag/offline-composer.ts";
import { normalizeQuestion, parseQuestion } from "../../src/rag/question-parser.ts";
import type { Evidence, Finding } from "../../src/rag/types.ts";
import { understandTurn } from "../../src/rag/understand.ts";
import { answerDisagreements } from "../../src/rag/verify.ts";
import { shippedVocabulary } from "./pack-vocabulary.ts";

const vocabulary = await shippedVocabulary();

/** A box of side 0.1 centred on (x, y). */
const around = (x: number, y: number) => ({ x0: x - 0.05, y0: y - 0.05, x1: x + 0.05, y1: y + 0.05 });

describe("the part of an image a question names", () => {
  it("reads corners, sides and the middle, in the words people use", () => {
    const cases: Array<[string, string | undefined]> = [
      ["What is in the top-left?", "top-left"],
      ["what's in the upper right corner?", "top-right"],
      ["What do you see in the lower-left quadrant?", "bottom-left"],
      ["Anything at the bottom right?", "bottom-right"],
      ["What is on the left?", "left"],
      ["Which objects are on the right side?", "right"],
      ["What is in the top half?", "top"],
      ["What's at the bottom of the picture?", "bottom"],
      ["What is in the middle?", "center"],
      ["What is in the centre of the image?", "center"],
      ["What is at the center?", "center"],
      ["What is in this image?", undefined],
      ["Is there a red star?", undefined],
    ];
    for (const [question, area] of cases) expect(areaNamed(normalizeQuestion(question)), question).toBe(area);
  });

  it("puts an object where the centre of its box lies", () => {
    const topLeft = around(0.2, 0.3);
    expect(IMAGE_AREAS.filter((area) => inArea(area, topLeft))).toEqual(["top-left", "left", "top"]);
    const bottomRight = around(0.8, 0.9);
    expect(IMAGE_AREAS.filter((area) => inArea(area, bottomRight))).toEqual([
      "bottom-right",
      "right",
      "bottom",
    ]);
    // The middle third of both axes is the center, whatever quadrant the centre is also in.
    const middle = around(0.45, 0.6);
    expect(IMAGE_AREAS.filter((area) => inArea(area, middle))).toEqual([
      "bottom-left",
      "left",
      "bottom",
      "center",
    ]);
    // The halves split at 0.5 exactly: a centre on the line is right (and bottom), as left/right answers say.
    const onTheLine = { x0: 0.4, y0: 0.4, x1: 0.6, y1: 0.6 };
    expect(inArea("right", onTheLine)).toBe(true);
    expect(inArea("left", onTheLine)).toBe(false);
    expect(inArea("bottom-right", onTheLine)).toBe(true);
    expect(inArea("center", around(0.3, 0.5))).toBe(false);
  });

  it("words each part for answers and questions", () => {
    expect(areaPhrase("top-left")).toBe("in the top-left");
    expect(areaPhrase("left")).toBe("on the left");
    expect(areaPhrase("bottom")).toBe("at the bottom");
    expect(areaQuestion("center")).toBe("What is in the center?");
  });
});

describe("parsing questions about a part of an image", () => {
  it("asks what is in a part only when no object is named", () => {
    expect(parseQuestion("What is in the top-left?", vocabulary)).toMatchObject({
      type: "area",
      area: "top-left",
      objects: [],
      corpusScope: false,
      inVocabulary: true,
    });
    expect(parseQuestion("Is there anything on the right?", vocabulary)).toMatchObject({
      type: "area",
      area: "right",
    });
    expect(parseQuestion("What objects are in the middle?", vocabulary)).toMatchObject({
      type: "area",
      area: "center",
    });
    // Questions about a named object keep their own type.
    expect(parseQuestion("Is the red circle on the left or the right?", vocabulary).type).toBe("position");
    expect(parseQuestion("What color is the circle on the left?", vocabulary).type).toBe("color");
    expect(parseQuestion("Is the red circle on the left?", vocabulary).type).not.toBe("area");
    expect(parseQuestion("How many objects are on the left?", vocabulary).type).toBe("count");
    expect(parseQuestion("What is in this image?", vocabulary).type).toBe("describe");
    expect(parseQuestion("What is in this image?", vocabulary).area).toBeUndefined();
  });

  it("reads a follow-up that names only another part, with a standalone question", () => {
    const turn = understandTurn({
      question: "And the bottom right?",
      history: [
        { role: "user", content: "What is in the top-left?", images: [{ bytes: new Uint8Array([1]) }] },
        { role: "assistant", content: "In the top-left of the image there is a small red star [att_1]." },
      ],
      vocabulary,
    });
    expect(turn.intent).toMatchObject({ type: "area", area: "bottom-right" });
    expect(turn.standaloneQuestion).toBe("What is in the bottom-right?");
    expect(turn.images.map((image) => image.evidenceId)).toEqual(["att_1"]);
  });
});

describe("the offline answer about a part of an image", () => {
  const areaEvidence = (id: string, finding?: Finding): Evidence => ({
    citation: {
      id,
      kind: "image",
      mediaUrl: null,
      thumbnailUrl: null,
      start: null,
      end: null,
      question: null,
      answer: null,
      score: 1,
    },
    attachment: true,
    text: "",
    findings: finding === undefined ? [] : [finding],
  });
  const finding = (answer: string, probability = 0.9): Finding => ({
    question: "What is in the top-left?",
    answer,
    probability,
    alternatives: [],
    source: "detector",
  });
  const intent = parseQuestion("What is in the top-left?", vocabulary);

  it("lists the objects there with their attributes", () => {
    expect(
      listObjects([
        { label: "circle", attributes: { color: "red", size: "large" } },
        { label: "star", attributes: { color: "blue", size: "small" } },
        { label: "hexagon", attributes: { color: "orange", size: "" } },
      ]),
    ).toBe("a large red circle, a small blue star and an orange hexagon");
    expect(listObjects([])).toBe("nothing");
    const answer = composeOffline({
      intent,
      standaloneQuestion: "What is in the top-left?",
      evidence: [areaEvidence("att_1", finding("a large red circle and a small blue star", 0.93))],
      turnImageIds: ["att_1"],
    });
    expect(answer).toEqual({
      text: "In the top-left of the image there is a large red circle and a small blue star [att_1].",
      answered: true,
      confidence: 0.93,
    });
  });

  it("says when there is nothing there, and hedges a list the head is unsure of", () => {
    expect(
      composeOffline({
        intent,
        standaloneQuestion: "What is in the top-left?",
        evidence: [
          areaEvidence("att_1", finding("nothing", 0.8)),
          areaEvidence("img_abcdef", finding("a red star", 0.4)),
        ],
        turnImageIds: ["att_1", "img_abcdef"],
      }).text,
    ).toBe(
      "There is nothing in the top-left of att_1 [att_1]. In the top-left of img_abcdef there is probably a red star [img_abcdef].",
    );
  });

  it("declines without an image, and without a detection head to look with", () => {
    const noImage = composeOffline({ intent, standaloneQuestion: "x", evidence: [], turnImageIds: [] });
    expect(noImage.answered).toBe(false);
    expect(noImage.text).toContain("none is attached or named");
    const noHead = composeOffline({
      intent,
      standaloneQuestion: "x",
      evidence: [areaEvidence("att_1")],
      turnImageIds: ["att_1"],
    });
    expect(noHead.answered).toBe(false);
    expect(noHead.text).toContain("no detection head");
  });
});

describe("disagreements between the detection head and the VQA head in the verification", () => {
  const evidence = (id: string, findings: Finding[]): Evidence => ({
    citation: {
      id,
      kind: "image",
      mediaUrl: null,
      thumbnailUrl: null,
      start: null,
      end: null,
      question: null,
      answer: null,
      score: 1,
    },
    attachment: false,
    text: "",
    findings,
  });
  const counted: Finding = {
    question: "How many objects are there?",
    answer: "3",
    probability: 0.97,
    alternatives: [],
    source: "detector",
    disagreement: {
      detector: { answer: "3", probability: 0.97 },
      vqa: { answer: "2", probability: 0.83 },
      followed: "detector",
    },
  };
  const plain = { checked: 1, confirmed: 1, contradictions: [], corrected: false };

  it("adds those of the cited evidence's findings, each question about each image once", () => {
    const merged = answerDisagreements({
      verification: {
        ...plain,
        disagreements: [
          { question: counted.question, evidenceId: "att_1", ...(counted.disagreement as object) } as never,
        ],
      },
      evidence: [
        evidence("att_1", [counted]),
        evidence("img_cited1", [{ ...counted, question: "How many stars are there?" }]),
        evidence("img_notcited", [counted]),
      ],
      citedIds: ["att_1", "img_cited1"],
    });
    expect(merged.disagreements?.map((item) => `${item.evidenceId}|${item.question}`)).toEqual([
      "att_1|How many objects are there?",
      "img_cited1|How many stars are there?",
    ]);
    expect(merged.disagreements?.[1]).toMatchObject({
      detector: { answer: "3" },
      vqa: { answer: "2" },
      followed: "detector",
    });
  });

  it("shows an LLM composer both heads' answers, and a region's parent", () => {
    const region = evidence("reg_abcdef12", []);
    region.citation = {
      ...region.citation,
      kind: "region",
      parentId: "img_parent1",
      boxes: [{ box: { x0: 0.1, y0: 0.1, x1: 0.3, y1: 0.3 }, label: "star", attributes: {}, score: 0.9 }],
    };
    const prompt = renderEvidence({ evidence: [evidence("att_1", [counted]), region] });
    expect(prompt).toContain(
      'detection head "How many objects are there?" → "3" p=0.97; the VQA head answered "2" p=0.83',
    );
    expect(prompt).toContain("[reg_abcdef12] · region · an object in img_parent1");
  });

  it("leaves the verification as it was when the heads agreed", () => {
    const { disagreement: _none, ...agreed } = counted;
    const merged = answerDisagreements({
      verification: plain,
      evidence: [evidence("att_1", [agreed])],
      citedIds: ["att_1"],
    });
    expect(merged).toBe(plain);
    expect("disagreements" in merged).toBe(false);
  });
});
