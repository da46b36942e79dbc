/**
 * Diversity: maximal marginal relevance (Carbonell & Goldstein, 1998) with a hard similarity ceiling.
 *
 * With `diversity` d in (0, 1], candidates are picked greedily by
 * `λ·relevance − (1 − λ)·max cosine to the items already picked`, λ = 1 − d/2, and while any candidate
 * left is at most {@link maxCosineFor}(d) = 1 − 0.2·d similar to every item picked so far, only such
 * candidates are picked. So no two results are closer than that cosine, unless the candidates hold fewer
 * such items than were asked for: only then are the nearest ones (the fewest too-close pairs first, by
 * MMR score) added at the end to fill the list.
 */
import { ValidationError } from "../errors.ts";
import { dotProduct } from "./rocchio.ts";

/** A candidate for re-ranking: its relevance (cosine to the query) and unit embedding. */
export interface DiversityCandidate<Item> {
  item: Item;
  relevance: number;
  vector: Float32Array;
}

/** The similarity ceiling between two results for a `diversity` (see the module comment). */
export function maxCosineFor(diversity: number): number {
  return 1 - 0.2 * diversity;
}

/** The MMR trade-off λ for a `diversity`: 1 keeps relevance only, 0.5 weighs novelty as much. */
export function mmrLambdaFor(diversity: number): number {
  return 1 - diversity / 2;
}

/** Checks `diversity`: a number from 0 (off) to 1. */
export function checkDiversity(diversity: number): number {
  if (typeof diversity !== "number" || !Number.isFinite(diversity) || diversity < 0 || diversity > 1) {
    throw new ValidationError(
      `diversity must be a number from 0 (off) to 1; got ${JSON.stringify(diversity)}.`,
      {
        context: { diversity },
      },
    );
  }
  return diversity;
}

/**
 * The `topK` candidates re-ranked for diversity `diversity` (0 returns the `topK` most relevant, in order).
 * Each result carries `maxCosine`: its largest cosine to a result ranked above it (0 for the first).
 */
export function diversify<Item>({
  candidates,
  topK,
  diversity,
}: {
  candidates: readonly DiversityCandidate<Item>[];
  topK: number;
  diversity: number;
}): { item: Item; relevance: number; maxCosine: number }[] {
  checkDiversity(diversity);
  const ordered = [...candidates].sort((left, right) => right.relevance - left.relevance);
  if (diversity === 0) {
    return ordered.slice(0, topK).map(({ item, relevance }) => ({ item, relevance, maxCosine: 0 }));
  }
  const lambda = mmrLambdaFor(diversity);
  const ceiling = maxCosineFor(diversity);
  const remaining = ordered.map((candidate) => ({ ...candidate, nearest: Number.NEGATIVE_INFINITY }));
  const picked: { item: Item; relevance: number; maxCosine: number }[] = [];
  while (picked.length < topK && remaining.length > 0) {
    const anyFar = remaining.some((candidate) => candidate.nearest <= ceiling);
    let bestIndex = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    remaining.forEach((candidate, index) => {
      if (anyFar && candidate.nearest > ceiling) return;
      const novelty = candidate.nearest === Number.NEGATIVE_INFINITY ? 0 : candidate.nearest;
      const score = lambda * candidate.relevance - (1 - lambda) * novelty;
      if (score > bestScore) {
        bestScore = score;
        bestIndex = index;
      }
    });
    const [chosen] = remaining.splice(bestIndex, 1);
    if (chosen === undefined) break;
    picked.push({
      item: chosen.item,
      relevance: chosen.relevance,
      maxCosine: chosen.nearest === Number.NEGATIVE_INFINITY ? 0 : chosen.nearest,
    });
    for (const candidate of remaining) {
      candidate.nearest = Math.max(candidate.nearest, dotProduct(candidate.vector, chosen.vector));
    }
  }
  return picked;
}
