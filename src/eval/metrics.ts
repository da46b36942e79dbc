/**
 * Retrieval and classification metrics of the evals: ranking by cosine similarity, Recall@k, Precision@k,
 * accuracy per question type, and the chance levels they are compared with.
 */
import { ValidationError } from "../errors.ts";

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

/** Relevance of gallery items to one query. */
export type Relevance = ReadonlySet<number> | ((galleryIndex: number) => boolean);

function isRelevant(relevance: Relevance, index: number): boolean {
  return typeof relevance === "function" ? relevance(index) : relevance.has(index);
}

function checkLengths(ranked: readonly (readonly number[])[], relevant: readonly Relevance[]): void {
  if (ranked.length !== relevant.length) {
    throw new ValidationError(
      `Got ${ranked.length} rankings but ${relevant.length} relevance sets; give one of each per query.`,
    );
  }
}

/**
 * Recall@k as retrieval evals use it with one or more relevant items per query: the share of queries with
 * at least one relevant item among their first `k` results. 0 for no queries.
 */
export function recallAtK({
  ranked,
  relevant,
  k,
}: {
  ranked: readonly (readonly number[])[];
  relevant: readonly Relevance[];
  k: number;
}): number {
  checkK(k);
  checkLengths(ranked, relevant);
  if (ranked.length === 0) return 0;
  let hits = 0;
  ranked.forEach((row, query) => {
    const relevance = relevant[query] as Relevance;
    if (row.slice(0, k).some((index) => isRelevant(relevance, index))) hits += 1;
  });
  return hits / ranked.length;
}

/**
 * Mean Precision@k: per query, the share of its first `k` results that are relevant (missing results
 * count as not relevant), averaged over queries. 0 for no queries.
 */
export function precisionAtK({
  ranked,
  relevant,
  k,
}: {
  ranked: readonly (readonly number[])[];
  relevant: readonly Relevance[];
  k: number;
}): number {
  checkK(k);
  checkLengths(ranked, relevant);
  if (ranked.length === 0) return 0;
  let sum = 0;
  ranked.forEach((row, query) => {
    const relevance = relevant[query] as Relevance;
    sum += row.slice(0, k).filter((index) => isRelevant(relevance, index)).length / k;
  });
  return sum / ranked.length;
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
