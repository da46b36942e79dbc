/** Small numeric helpers shared by the encoders and heads. */

/** Returns a unit-length copy of `vector` (a zero vector stays zero). */
export function l2Normalize(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum);
  const out = new Float32Array(vector.length);
  if (norm === 0) return out;
  for (let index = 0; index < vector.length; index += 1) out[index] = (vector[index] ?? 0) / norm;
  return out;
}

/** Cosine similarity of two vectors of the same length. */
export function cosineSimilarity(left: ArrayLike<number>, right: ArrayLike<number>): number {
  let dot = 0;
  let leftNorm = 0;
  let rightNorm = 0;
  for (let index = 0; index < left.length; index += 1) {
    const a = left[index] ?? 0;
    const b = right[index] ?? 0;
    dot += a * b;
    leftNorm += a * a;
    rightNorm += b * b;
  }
  return leftNorm === 0 || rightNorm === 0 ? 0 : dot / Math.sqrt(leftNorm * rightNorm);
}

/** Numerically stable softmax. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let index = 0; index < logits.length; index += 1) max = Math.max(max, logits[index] ?? 0);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let index = 0; index < logits.length; index += 1) {
    const value = Math.exp((logits[index] ?? 0) - max);
    out[index] = value;
    sum += value;
  }
  for (let index = 0; index < out.length; index += 1) out[index] = (out[index] ?? 0) / sum;
  return out;
}

/** Splits `items` into consecutive chunks of at most `size`. */
export function chunk<Item>(items: readonly Item[], size: number): Item[][] {
  const chunks: Item[][] = [];
  for (let start = 0; start < items.length; start += size) chunks.push(items.slice(start, start + size));
  return chunks;
}
