/**
 * Retrieval and classification metrics of the evals: ranking by cosine similarity, Recall@k, Precision@k,
 * MRR, nDCG@k, accuracy per question type, and the chance levels they are compared with. Rankings hold
 * gallery indices (the pack eval) or item ids (suites run against the server): any value compared by `===`.
 */
import { ValidationError } from "../../errors.ts";

function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 1) {
    throw new ValidationError(`k must be a positive integer, got ${k}.`, { context: { k } });
  }
}

function dot(left: Float32Array, right: Float32Array): number {
  let sum = 0;
  for (let index = 0; index < left.length; index += 1) sum += (left[index] ?? 0) * (right[index] ?? 0);
  return sum;
}

/**
 * The `k` gallery indices with the highest scores, best first. Ties go to the lower index, so rankings are
 * reproducible.
 */
export function topKIndices({ scores, k }: { scores: ArrayLike<number>; k: number }): number[] {
  checkK(k);
  const best: number[] = [];
  for (let index = 0; index < scores.length; index += 1) {
    const score = scores[index] ?? Number.NEGATIVE_INFINITY;
    if (best.length === k && score <= (scores[best[k - 1] as number] ?? Number.NEGATIVE_INFINITY)) continue;
    // Insertion into a short sorted list: k is small (≤ 10 here), galleries are large.
    let position = best.length;
    while (position > 0 && score > (scores[best[position - 1] as number] ?? Number.NEGATIVE_INFINITY)) {
      position -= 1;
    }
    best.splice(position, 0, index);
    if (best.length > k) best.pop();
  }
  return best;
}

/**
 * For each query vector, the `k` gallery items with the highest dot product (cosine similarity for
 * L2-normalized vectors), best first.
 */
export function rankGallery({
  queries,
  gallery,
  k,
}: {
  queries: readonly Float32Array[];
  gallery: readonly Float32Array[];
  k: number;
}): number[][] {
  checkK(k);
  const scores = new Float32Array(gallery.length);
  return queries.map((query) => {
    gallery.forEach((item, index) => {
      scores[index] = dot(query, item);
    });
    return topKIndices({ scores, k });
  });
}

/** Relevance of gallery items (indices or ids) to one query: a set, or a test. */
export type Relevance<Item = number> = ReadonlySet<Item> | ((item: Item) => boolean);

/**
 * Graded relevance of items to one query for nDCG: a set (every member has gain 1) or a map from item to
 * gain (items absent or with gain ≤ 0 are not relevant).
 */
export type GradedRelevance<Item = number> = ReadonlySet<Item> | ReadonlyMap<Item, number>;

function isGradeMap<Item>(relevance: GradedRelevance<Item>): relevance is ReadonlyMap<Item, number> {
  return relevance instanceof Map;
}

/** Graded relevance as a yes/no test: an item is relevant when its gain is above 0. */
export function binaryRelevance<Item>(relevance: GradedRelevance<Item>): Relevance<Item> {
  if (!isGradeMap(relevance)) return relevance;
  return (item: Item) => (relevance.get(item) ?? 0) > 0;
}

/**
 * The options of the ranking metrics: one ranking and one relevance per query (in the same order), scored
 * over each ranking's first `k` items.
 */
export interface RankingAtK<Item = number, ItemRelevance = Relevance<Item>> {
  ranked: readonly (readonly Item[])[];
  relevant: readonly ItemRelevance[];
  k: number;
}

function isRelevant<Item>(relevance: Relevance<Item>, item: Item): boolean {
  return typeof relevance === "function" ? relevance(item) : relevance.has(item);
}

function checkLengths(ranked: readonly (readonly unknown[])[], relevant: readonly unknown[]): void {
  if (ranked.length !== relevant.length) {
    throw new ValidationError(
      `Got ${ranked.length} rankings but ${relevant.length} relevance sets; give one of each per query.`,
    );
  }
}

/** The mean over queries of `score(row, relevance, query)`, after checking the inputs agree; 0 for no queries. */
function meanPerQuery<Item, R>(
  ranked: readonly (readonly Item[])[],
  relevant: readonly R[],
  score: (row: readonly Item[], relevance: R, query: number) => number,
): number {
  checkLengths(ranked, relevant);
  if (ranked.length === 0) return 0;
  let sum = 0;
  ranked.forEach((row, query) => {
    sum += score(row, relevant[query] as R, query);
  });
  return sum / ranked.length;
}

/**
 * Recall@k as retrieval evals use it with one or more relevant items per query: the share of queries with
 * at least one relevant item among their first `k` results. 0 for no queries.
 */
export function recallAtK<Item = number>({ ranked, relevant, k }: RankingAtK<Item>): number {
  checkK(k);
  return meanPerQuery(ranked, relevant, (row, relevance) =>
    row.slice(0, k).some((item) => isRelevant(relevance, item)) ? 1 : 0,
  );
}

/**
 * Mean Precision@k: per query, the share of its first `k` results that are relevant (missing results
 * count as not relevant), averaged over queries. 0 for no queries.
 */
export function precisionAtK<Item = number>({ ranked, relevant, k }: RankingAtK<Item>): number {
  checkK(k);
  return meanPerQuery(
    ranked,
    relevant,
    (row, relevance) => row.slice(0, k).filter((item) => isRelevant(relevance, item)).length / k,
  );
}

/**
 * Mean reciprocal rank: per query, 1 / the rank of its first relevant result (0 when none is within the
 * first `k`, or anywhere when `k` is not given), averaged over queries. 0 for no queries.
 */
export function meanReciprocalRank<Item = number>({
  ranked,
  relevant,
  k,
}: Omit<RankingAtK<Item>, "k"> & { k?: number }): number {
  if (k !== undefined) checkK(k);
  return meanPerQuery(ranked, relevant, (row, relevance) => {
    const position = (k === undefined ? row : row.slice(0, k)).findIndex((item) =>
      isRelevant(relevance, item),
    );
    return position >= 0 ? 1 / (position + 1) : 0;
  });
}

function gainOf<Item>(relevance: GradedRelevance<Item>, item: Item): number {
  if (isGradeMap(relevance)) return Math.max(0, relevance.get(item) ?? 0);
  return relevance.has(item) ? 1 : 0;
}

function idealGains<Item>(relevance: GradedRelevance<Item>): number[] {
  const gains = isGradeMap(relevance) ? [...relevance.values()] : [...relevance].map(() => 1);
  return gains.filter((gain) => gain > 0).sort((left, right) => right - left);
}

/** Σ gain / log2(rank + 1) over the first `k` gains. */
function discountedGain(gains: readonly number[], k: number): number {
  let sum = 0;
  gains.slice(0, k).forEach((gain, position) => {
    sum += gain / Math.log2(position + 2);
  });
  return sum;
}

/**
 * Mean nDCG@k with linear gains: per query, DCG@k = Σ gain(item at rank i) / log2(i + 1) over the first `k`
 * results, divided by the DCG@k of the ideal ordering of every relevant item; averaged over queries. An
 * item listed twice gains only at its first rank, so a query never exceeds 1. A query with no relevant
 * item scores 0. 0 for no queries.
 */
export function ndcgAtK<Item = number>({
  ranked,
  relevant,
  k,
}: RankingAtK<Item, GradedRelevance<Item>>): number {
  checkK(k);
  return meanPerQuery(ranked, relevant, (row, relevance, query) => {
    for (const gain of isGradeMap(relevance) ? relevance.values() : []) {
      if (!Number.isFinite(gain)) {
        throw new ValidationError(
          `Relevance grades must be finite numbers, got ${gain} for query ${query}.`,
          {
            context: { query, gain },
          },
        );
      }
    }
    const ideal = discountedGain(idealGains(relevance), k);
    if (ideal === 0) return 0;
    const seen = new Set<Item>();
    const gains = row.slice(0, k).map((item) => {
      if (seen.has(item)) return 0;
      seen.add(item);
      return gainOf(relevance, item);
    });
    return discountedGain(gains, k) / ideal;
  });
}

/** Accuracy of one group of answers. */
export interface Accuracy {
  accuracy: number;
  /** How many answers were scored. */
  count: number;
}

/** Overall accuracy and accuracy per type (types in first-seen order, or `types` order when given). */
export function accuracyByType<Type extends string>({
  results,
  types,
}: {
  results: readonly { type: Type; correct: boolean }[];
  /** Types to report, also when none of their answers was scored (accuracy 0, count 0). */
  types?: readonly Type[];
}): { overall: Accuracy; byType: Record<Type, Accuracy> } {
  const totals = new Map<Type, { correct: number; count: number }>();
  for (const type of types ?? []) totals.set(type, { correct: 0, count: 0 });
  let correct = 0;
  for (const result of results) {
    const total = totals.get(result.type) ?? { correct: 0, count: 0 };
    total.count += 1;
    if (result.correct) total.correct += 1;
    totals.set(result.type, total);
    if (result.correct) correct += 1;
  }
  const byType = {} as Record<Type, Accuracy>;
  for (const [type, total] of totals) {
    byType[type] = { accuracy: total.count === 0 ? 0 : total.correct / total.count, count: total.count };
  }
  return {
    overall: { accuracy: results.length === 0 ? 0 : correct / results.length, count: results.length },
    byType,
  };
}

/** ln C(n, k), for chance levels of large galleries without overflow. */
function logChoose(n: number, k: number): number {
  let sum = 0;
  for (let index = 1; index <= k; index += 1) sum += Math.log(n - k + index) - Math.log(index);
  return sum;
}

/**
 * Expected Recall@k of a random ranking: per query, 1 − C(n − r, k) / C(n, k) for `r` relevant items out of
 * `n`, averaged over queries.
 */
export function chanceRecallAtK({
  relevantCounts,
  gallerySize,
  k,
}: {
  relevantCounts: readonly number[];
  gallerySize: number;
  k: number;
}): number {
  checkK(k);
  if (relevantCounts.length === 0) return 0;
  const draws = Math.min(k, gallerySize);
  const sum = relevantCounts.reduce((total, relevantCount) => {
    if (gallerySize - relevantCount < draws) return total + 1;
    return (
      total + 1 - Math.exp(logChoose(gallerySize - relevantCount, draws) - logChoose(gallerySize, draws))
    );
  }, 0);
  return sum / relevantCounts.length;
}

/** Expected Precision@k of a random ranking: the mean share of relevant items, r / n, over queries. */
export function chancePrecision({
  relevantCounts,
  gallerySize,
}: {
  relevantCounts: readonly number[];
  gallerySize: number;
}): number {
  if (relevantCounts.length === 0 || gallerySize === 0) return 0;
  return relevantCounts.reduce((total, count) => total + count / gallerySize, 0) / relevantCounts.length;
}
