/**
 * The verify step: reads the visual claims a composed answer makes (colors, shapes, counts, presence,
 * sizes, positions), asks the VQA head each one as a question about the images the sentence cites, and
 * reports the claims the head confidently contradicts. The chain then appends a correction to the
 * answer and lowers its confidence. Claims about video segments are not judged (a keyframe cannot show
 * motion), and neither are claims the head is unsure about. A count or a side is answered by both the
 * detection head and the VQA head: the detection head's answer judges the claim when it is confident, and
 * where the two heads differ the verification lists both (`disagreements`). Claims are read in the pack's vocabulary
 * (its colors, shapes with their plurals, sizes with their synonyms); with none, no claim is read.
 */
import { isEmptyVocabulary, type PackVocabulary } from "../inference/index.ts";
import { probabilityOf, type VisualCache } from "./ground.ts";
import { pluralOf, shapeNamed, sizeNamed } from "./question-parser.ts";
import type { Disagreement, Evidence, Verification } from "./types.ts";

/** One visual claim of an answer, as a question to the VQA head and the answer the claim implies. */
export interface VisualClaim {
  /** The words of the answer that make the claim. */
  claim: string;
  /** Evidence ids the claim is about. */
  evidenceIds: string[];
  /** Canonical question the head is asked. */
  question: string;
  /** The answer the claim states. */
  stated: string;
}

/** Thresholds of verification. */
export interface VerifySettings {
  /** The head must give its own answer at least this probability to contradict a claim… */
  contradictAbove: number;
  /** …and the stated answer at most this one. */
  statedBelow: number;
}

export const DEFAULT_VERIFY_SETTINGS: VerifySettings = { contradictAbove: 0.75, statedBelow: 0.15 };

const NUMBER_WORDS: Record<string, string> = {
  no: "0",
  zero: "0",
  one: "1",
  two: "2",
  three: "3",
  four: "4",
};
const CITATION = /\[((?:img|seg|tri|reg)_[A-Za-z0-9]{6,64}|att_\d{1,3})\]/g;
const HEDGE = "(?:probably |likely |clearly |definitely )?";

/** The vocabulary as regular-expression alternatives. */
interface ClaimTerms {
  /** `(red|green|…)`. */
  color: string;
  /** `(circle|square|…)`: shape names. */
  shape: string;
  /** `(circle|circles|…)`: shape names and plurals. */
  shapeForm: string;
  /** `(?:small|large)`: size names. */
  sizeName: string;
  /** `(small|little|…)`: size names and synonyms. */
  sizeWord: string;
}

const claimTerms = new WeakMap<PackVocabulary, ClaimTerms>();

/** `(a|b)`, or a group that never matches when there is nothing to list. */
function alternatives(words: readonly string[], { capture = true }: { capture?: boolean } = {}): string {
  const body =
    words.length === 0 ? "(?!)" : words.map((word) => word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  return capture ? `(${body})` : `(?:${body})`;
}

function termsOf(vocabulary: PackVocabulary): ClaimTerms {
  let terms = claimTerms.get(vocabulary);
  if (terms === undefined) {
    const { colors, shapes, sizes } = vocabulary;
    terms = {
      color: alternatives(colors),
      shape: alternatives(shapes.map((shape) => shape.name)),
      shapeForm: alternatives(shapes.flatMap((shape) => [shape.name, shape.plural])),
      sizeName: alternatives(
        sizes.map((size) => size.name),
        { capture: false },
      ),
      sizeWord: alternatives(sizes.flatMap((size) => [size.name, ...size.synonyms])),
    };
    claimTerms.set(vocabulary, terms);
  }
  return terms;
}

function sentencesOf(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+|\n+/)
    .map((sentence) => sentence.trim())
    .filter((sentence) => sentence.length > 0);
}

/**
 * The claims of an answer. A sentence's claims are about the ids it cites; a sentence that cites nothing
 * is about `defaultEvidenceIds` (the turn's one image, when there is exactly one).
 */
export function extractClaims({
  answer,
  defaultEvidenceIds = [],
  vocabulary,
}: {
  answer: string;
  defaultEvidenceIds?: readonly string[];
  /** The pack's vocabulary: the colors, shapes and sizes a claim can name. */
  vocabulary: PackVocabulary;
}): VisualClaim[] {
  if (isEmptyVocabulary(vocabulary)) return [];
  const terms = termsOf(vocabulary);
  const { color: anyColor, shape: anyShape, sizeName: anySize } = terms;
  const claims: VisualClaim[] = [];
  const seen = new Set<string>();
  for (const sentence of sentencesOf(answer)) {
    const cited = [...sentence.matchAll(CITATION)].map((match) => match[1] as string);
    const evidenceIds = cited.length > 0 ? [...new Set(cited)] : [...defaultEvidenceIds];
    if (evidenceIds.length === 0) continue;
    const text = sentence
      .replace(CITATION, " ")
      .toLowerCase()
      .replace(/colou?r(ed)?/g, (word) => (word.endsWith("ed") ? "colored" : "color"))
      .replace(/[^a-z0-9\s]/g, " ")
      .replace(/\s+/g, " ")
      .trim();
    const add = (claim: string, question: string, stated: string) => {
      const key = `${question}|${evidenceIds.join(",")}`;
      if (seen.has(key)) return;
      seen.add(key);
      claims.push({ claim, evidenceIds, question, stated });
    };
    const covered: Array<[number, number]> = [];
    const mark = (match: RegExpExecArray) => covered.push([match.index, match.index + match[0].length]);
    const isCovered = (index: number) => covered.some(([start, end]) => index >= start && index < end);

    for (const match of text.matchAll(
      new RegExp(
        `\\bthe (?:${anySize} )?(?:${anyColor} )?${anyShape} (?:is|looks|appears|seems)(?: to be)? ${HEDGE}(?:colored )?${anyColor}\\b`,
        "g",
      ),
    )) {
      const [, ownColor, shape, color] = match;
      if (ownColor !== undefined) continue;
      mark(match as RegExpExecArray);
      add(match[0], `What color is the ${shape}?`, color as string);
    }
    for (const match of text.matchAll(
      new RegExp(`\\bthe ${anyColor} (?:object|shape|thing|one) is ${HEDGE}(?:an? )?${anyShape}\\b`, "g"),
    )) {
      mark(match as RegExpExecArray);
      add(match[0], `What shape is the ${match[1]} object?`, match[2] as string);
    }
    for (const match of text.matchAll(
      new RegExp(`\\bthe (?:${anySize} )?${anyColor} ${anyShape} is ${HEDGE}${terms.sizeWord}\\b`, "g"),
    )) {
      mark(match as RegExpExecArray);
      const size = sizeNamed(match[3] as string, vocabulary) as string;
      add(match[0], `Is the ${match[1]} ${match[2]} small or large?`, size);
    }
    for (const match of text.matchAll(
      new RegExp(
        `\\bthe (?:${anySize} )?${anyColor} ${anyShape} is ${HEDGE}(?:on the |to the )?(left|right)\\b`,
        "g",
      ),
    )) {
      mark(match as RegExpExecArray);
      add(match[0], `Is the ${match[1]} ${match[2]} on the left or the right?`, match[3] as string);
    }
    for (const match of text.matchAll(
      new RegExp(
        `\\bthere (?:is|are) ${HEDGE}(\\d|no|zero|one|two|three|four) (?:${anySize} )?(?:${anyColor} )?(?:${terms.shapeForm}|objects?|shapes?|things?)\\b`,
        "g",
      ),
    )) {
      const [, number, color, shapeForm] = match;
      const shape = shapeForm === undefined ? undefined : shapeNamed(shapeForm, vocabulary);
      mark(match as RegExpExecArray);
      const count = NUMBER_WORDS[number as string] ?? (number as string);
      if (color !== undefined && shape !== undefined) {
        add(match[0], `Is there a ${color} ${shape}?`, count === "0" ? "no" : "yes");
      } else if (shape !== undefined) {
        add(match[0], `How many ${pluralOf(shape, vocabulary)} are there?`, count);
      } else if (color !== undefined) {
        add(match[0], `How many ${color} objects are there?`, count);
      } else {
        add(match[0], "How many objects are there?", count);
      }
    }
    // Any other "a red star" is a claim of presence, "no red star" one of absence (as is a mention in a
    // sentence that denies something before it: "none of them shows a red star").
    for (const match of text.matchAll(
      new RegExp(`\\b(an?|no|any) (?:${anySize} )?${anyColor} ${anyShape}\\b`, "g"),
    )) {
      if (isCovered(match.index)) continue;
      const before = text.slice(0, match.index);
      const negated = match[1] === "no" || /\b(no|not|none|never|without|neither|nor)\b/.test(before);
      add(match[0], `Is there a ${match[2]} ${match[3]}?`, negated ? "no" : "yes");
    }
  }
  return claims;
}

/** Result of {@link verifyClaims}. */
export interface VerifyResult {
  verification: Verification;
  /** A note to append to the answer when a claim was contradicted; empty otherwise. */
  note: string;
  /** The highest probability with which the head contradicted a claim (0 when none). */
  strongestContradiction: number;
}

/** Asks the head every claim about every cited image it can see. */
export async function verifyClaims({
  claims,
  cache,
  settings: given = {},
}: {
  claims: readonly VisualClaim[];
  cache: VisualCache;
  settings?: Partial<VerifySettings>;
}): Promise<VerifyResult> {
  const settings = { ...DEFAULT_VERIFY_SETTINGS, ...given };
  const verification: Verification = { checked: 0, confirmed: 0, contradictions: [], corrected: false };
  let strongest = 0;
  const byEvidence = new Map<string, VisualClaim[]>();
  for (const claim of claims) {
    for (const id of claim.evidenceIds) {
      if (id.startsWith("seg_") || !cache.has(id)) continue;
      byEvidence.set(id, [...(byEvidence.get(id) ?? []), claim]);
    }
  }
  const disagreements: Disagreement[] = [];
  for (const [evidenceId, evidenceClaims] of byEvidence) {
    const opinions = await cache.opinions(
      evidenceId,
      evidenceClaims.map((claim) => claim.question),
    );
    evidenceClaims.forEach((claim, index) => {
      const opinion = opinions[index];
      const distribution = opinion?.answers ?? [];
      const [observed] = distribution;
      if (observed === undefined) return;
      verification.checked += 1;
      if (opinion?.disagreement !== undefined)
        disagreements.push({ question: claim.question, evidenceId, ...opinion.disagreement });
      if (observed.answer === claim.stated) {
        verification.confirmed += 1;
        return;
      }
      const statedProbability = probabilityOf(distribution, claim.stated);
      if (observed.probability >= settings.contradictAbove && statedProbability <= settings.statedBelow) {
        verification.contradictions.push({
          claim: claim.claim,
          evidenceId,
          stated: claim.stated,
          observed: observed.answer,
          probability: Math.round(observed.probability * 1000) / 1000,
        });
        strongest = Math.max(strongest, observed.probability);
      }
    });
  }
  const note =
    verification.contradictions.length === 0
      ? ""
      : `Correction: ${verification.contradictions
          .map(
            (item) =>
              `"${item.claim}" does not match [${item.evidenceId}], where the image shows ${item.observed} rather than ${item.stated} (${Math.round(item.probability * 100)}% sure).`,
          )
          .join(" ")}`;
  verification.corrected = note.length > 0;
  if (disagreements.length > 0) verification.disagreements = disagreements;
  return { verification, note, strongestContradiction: strongest };
}

/**
 * The disagreements between the detection head and the VQA head an answer rests on: those the verify step
 * met on the answer's claims, then those grounding met on the evidence the answer cites (a count or a
 * side the answer gives in words the claims do not read), each question about each image once.
 */
export function answerDisagreements({
  verification,
  evidence,
  citedIds,
}: {
  verification: Verification;
  evidence: readonly Evidence[];
  citedIds: readonly string[];
}): Verification {
  const found = [...(verification.disagreements ?? [])];
  const seen = new Set(found.map((item) => `${item.evidenceId}|${item.question}`));
  for (const entry of evidence) {
    if (!citedIds.includes(entry.citation.id)) continue;
    for (const finding of entry.findings) {
      const key = `${entry.citation.id}|${finding.question}`;
      if (finding.disagreement === undefined || seen.has(key)) continue;
      seen.add(key);
      found.push({ question: finding.question, evidenceId: entry.citation.id, ...finding.disagreement });
    }
  }
  return found.length === 0 ? verification : { ...verification, disagreements: found };
}
