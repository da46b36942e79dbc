/**
 * The object-level side of a recommendation. An item a user likes may hold several objects, and what the
 * likes share is often one of them (a star among other shapes), which a whole-image embedding blurs. So
 * each liked item's regions (the objects the pack's detection head found, embedded in the same space) are
 * compared with the other liked items' regions, the one that best matches them (the sum over the other
 * items of its best cosine to their regions: multiple-instance learning's usual pick) stands for the item,
 * and the query is the weighted mean of those picks, minus the mean of each disliked item's region nearest
 * to it. It needs two liked items with regions; with fewer there is nothing to compare and no region query.
 *
 * Candidates are then ranked by `w · (best cosine of one of their regions to the region query) + (1 − w) ·
 * (cosine of the image to the Rocchio query)` with w = {@link REGION_WEIGHT}, chosen with
 * `npm run eval:recommend`.
 */
import { dotProduct } from "./rocchio.ts";

/** The weight of the region side in a candidate's score; the image side gets the rest. */
export const REGION_WEIGHT = 0.6;
/** How much the disliked items' regions are subtracted from the region query. */
export const REGION_NEGATIVE_WEIGHT = 1;

/** An item's regions' unit embeddings, and how much the item counts. */
export interface WeightedRegions {
  regions: readonly Float32Array[];
  weight: number;
}

/**
 * The unit region query of the liked and disliked items' regions; undefined unless two liked items have
 * regions.
 */
export function regionQuery({
  positives,
  negatives = [],
  negativeWeight = REGION_NEGATIVE_WEIGHT,
}: {
  positives: readonly WeightedRegions[];
  negatives?: readonly WeightedRegions[];
  negativeWeight?: number;
}): Float32Array | undefined {
  const liked = positives.filter((item) => item.regions.length > 0 && item.weight > 0);
  if (liked.length < 2) return undefined;
  const dimension = liked[0]?.regions[0]?.length ?? 0;
  const query = new Float64Array(dimension);
  let total = 0;
  for (const [index, item] of liked.entries()) {
    let best = item.regions[0] as Float32Array;
    let bestAgreement = Number.NEGATIVE_INFINITY;
    for (const region of item.regions) {
      let agreement = 0;
      for (const [other, otherItem] of liked.entries()) {
        if (other === index) continue;
        agreement +=
          otherItem.weight * Math.max(...otherItem.regions.map((candidate) => dotProduct(region, candidate)));
      }
      if (agreement > bestAgreement) {
        bestAgreement = agreement;
        best = region;
      }
    }
    total += item.weight;
    for (let dim = 0; dim < dimension; dim += 1)
      query[dim] = (query[dim] ?? 0) + item.weight * (best[dim] ?? 0);
  }
  for (let dim = 0; dim < dimension; dim += 1) query[dim] = (query[dim] ?? 0) / total;
  const disliked = negatives.filter((item) => item.regions.length > 0 && item.weight > 0);
  if (disliked.length > 0 && negativeWeight > 0) {
    const nearest = disliked.map((item) =>
      item.regions.reduce((left, right) =>
        dotProduct(left, query) >= dotProduct(right, query) ? left : right,
      ),
    );
    const weights = disliked.reduce((sum, item) => sum + item.weight, 0);
    disliked.forEach((item, index) => {
      const region = nearest[index] as Float32Array;
      for (let dim = 0; dim < dimension; dim += 1) {
        query[dim] = (query[dim] ?? 0) - (negativeWeight * item.weight * (region[dim] ?? 0)) / weights;
      }
    });
  }
  const norm = Math.sqrt(query.reduce((sum, value) => sum + value * value, 0));
  if (!(norm > 1e-9)) return undefined;
  return Float32Array.from(query, (value) => value / norm);
}

/**
 * Candidates' blended scores from the image side and the region side, each a map of item id to score. An
 * item missing from one side gets that side's lowest score (its true score there is no higher), 0 when
 * the side found nothing.
 */
export function blendScores({
  image,
  region,
  regionWeight = REGION_WEIGHT,
}: {
  image: ReadonlyMap<string, number>;
  region: ReadonlyMap<string, number>;
  regionWeight?: number;
}): Map<string, number> {
  const floorOf = (scores: ReadonlyMap<string, number>) =>
    scores.size === 0 ? 0 : Math.min(...scores.values());
  const imageFloor = floorOf(image);
  const regionFloor = floorOf(region);
  const blended = new Map<string, number>();
  for (const id of new Set([...image.keys(), ...region.keys()])) {
    blended.set(
      id,
      regionWeight * (region.get(id) ?? regionFloor) + (1 - regionWeight) * (image.get(id) ?? imageFloor),
    );
  }
  return blended;
}
