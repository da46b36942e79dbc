/**
 * Reciprocal rank fusion of ranked lists. Text-to-image, image-to-image and question-to-question
 * similarities sit on different scales (the last run far higher), so lists are merged by rank, not by
 * raw score: an item's fused score is the sum over lists of 1 / (k + rank), rank counted from 1.
 */

/** One ranked list to fuse: ids best first, with their raw similarity. */
export interface RankedList<T> {
  /** Names the list in the result (`text`, `image:att_1`, …). */
  name: string;
  items: ReadonlyArray<{ id: string; score: number; value: T }>;
}

/** One fused item. */
export interface FusedItem<T> {
  id: string;
  value: T;
  /** Sum of 1 / (k + rank) over the lists that hold the item. */
  fused: number;
  /** The best raw similarity the item had in any list. */
  bestScore: number;
  /** Raw similarity per list name. */
  scores: Record<string, number>;
}

/** The usual RRF constant (Cormack et al., 2009): damps the weight of the very first ranks. */
export const DEFAULT_RRF_K = 60;

/**
 * Fuses ranked lists by reciprocal rank. Ties in fused score go to the higher best raw score, then to the
 * id, so the order is deterministic.
 */
export function reciprocalRankFusion<T>({
  lists,
  k = DEFAULT_RRF_K,
}: {
  lists: readonly RankedList<T>[];
  k?: number;
}): FusedItem<T>[] {
  const byId = new Map<string, FusedItem<T>>();
  for (const list of lists) {
    list.items.forEach((item, index) => {
      const existing = byId.get(item.id);
      const contribution = 1 / (k + index + 1);
      if (existing === undefined) {
        byId.set(item.id, {
          id: item.id,
          value: item.value,
          fused: contribution,
          bestScore: item.score,
          scores: { [list.name]: item.score },
        });
      } else {
        existing.fused += contribution;
        existing.bestScore = Math.max(existing.bestScore, item.score);
        existing.scores[list.name] = Math.max(existing.scores[list.name] ?? -Infinity, item.score);
      }
    });
  }
  return [...byId.values()].sort(
    (left, right) =>
      right.fused - left.fused ||
      right.bestScore - left.bestScore ||
      (left.id < right.id ? -1 : left.id > right.id ? 1 : 0),
  );
}
