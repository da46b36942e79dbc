/**
 * Evaluation of recommendations with simulated users over a held-out Shapes World set embedded with a
 * model pack. Each user likes one attribute, or one combination of attributes, of the objects in an image
 * ("red objects", "stars", "red stars"); an image is relevant to them when one of its objects has it.
 *
 * A session starts from one liked relevant image (the user found it by searching). Then, turn after turn,
 * the strategy shows its top 10 of the images the user has not interacted with, and the user interacts with
 * the first one shown: a like when it is relevant, a dislike otherwise. Precision@10 of the list shown is
 * recorded after 1, 5 and 20 interactions and after 1, 5 and 20 likes. Strategies:
 *
 * - the default: what `GET /v1/users/{user}/recommendations` does (the events' profile, Rocchio's query over
 *   image embeddings and, with a detection head, the region query of `recommend/region-query.ts`, blended),
 *   over an exact search of the set; variants change the region weight `w`, leave the regions out (`images
 *   only`, with the negatives' weight γ), or re-rank with MMR (`diversity`);
 * - `last-liked`: the images most like the last liked one (what `/v1/similar` of it gives);
 * - `random`: 10 images the user has not seen, at random.
 */

import type { ObjectDetector } from "../../inference/detection-head.ts";
import type { ModelPack } from "../../inference/model-pack.ts";
import {
  blendScores,
  buildProfile,
  candidatePoolSize,
  DEFAULT_ROCCHIO_WEIGHTS,
  diversify,
  dotProduct,
  REGION_WEIGHT,
  type RocchioWeights,
  regionQuery,
  rocchioQuery,
  type UserEvent,
} from "../../recommend/index.ts";
import { COLORS, type Scene, SHAPES } from "../../synth/domain.ts";
import { renderScene } from "../../synth/render.ts";
import { createRng, type Rng } from "../../synth/rng.ts";
import { DEFAULT_EVAL_SEED, heldOutImages } from "./pack-eval.ts";

/** A simulated user's taste: every attribute listed must hold for one object of the image. */
export interface Preference {
  name: string;
  color?: (typeof COLORS)[number];
  shape?: (typeof SHAPES)[number];
}

/** The single-attribute users: one per color and one per shape. */
export const SINGLE_ATTRIBUTE_PREFERENCES: readonly Preference[] = [
  ...COLORS.map((color) => ({ name: `${color} objects`, color })),
  ...SHAPES.map((shape) => ({ name: `${shape}s`, shape })),
];

/** Users who like one color of one shape. */
export const COMBINATION_PREFERENCES: readonly Preference[] = [
  { name: "red stars", color: "red", shape: "star" },
  { name: "blue circles", color: "blue", shape: "circle" },
  { name: "green squares", color: "green", shape: "square" },
  { name: "yellow triangles", color: "yellow", shape: "triangle" },
  { name: "purple hexagons", color: "purple", shape: "hexagon" },
];

/** Whether an image's scene has an object the user likes. */
export function isRelevant(scene: Scene, preference: Preference): boolean {
  return scene.objects.some(
    (object) =>
      (preference.color === undefined || object.color === preference.color) &&
      (preference.shape === undefined || object.shape === preference.shape),
  );
}

/** A strategy's name and how it ranks. */
export type StrategyName = string;

/** What a strategy sees: the set's vectors, the user's events so far. */
interface Ranker {
  name: StrategyName;
  rank(options: { events: readonly UserEvent[]; seen: ReadonlySet<number>; rng: Rng }): number[];
}

/** Precision@10 at each checkpoint, averaged over sessions. */
export interface StrategyFigures {
  strategy: StrategyName;
  /** After 1, 5 and 20 interactions. */
  afterInteractions: Record<"1" | "5" | "20", number>;
  /** After 1, 5 and 20 likes (sessions that never got there are left out of that mean). */
  afterLikes: Record<"1" | "5" | "20", number>;
}

/** Figures of one group of users. */
export interface GroupFigures {
  group: "single attribute" | "combination";
  users: number;
  sessions: number;
  /** Share of the set relevant to a user of the group, on average (the random strategy's expected P@10). */
  baseRate: number;
  strategies: StrategyFigures[];
  /** The default strategy's precision@10 after 5 likes, for each user of the group. */
  perUser: { user: string; afterFiveLikes: number }[];
}

/** The report of {@link evaluateRecommendations}. */
export interface RecommendEvalReport {
  modelId: string;
  seed: number;
  images: number;
  sessionsPerUser: number;
  groups: GroupFigures[];
  /** The targets, each with whether it is met. */
  targets: { name: string; value: number; target: string; met: boolean }[];
  timings: { embedMs: number; simulateMs: number };
}

const CHECKPOINTS = [1, 5, 20] as const;
/** A session ends here even if the user has not liked 20 images by then. */
const MAX_INTERACTIONS = 60;
const TOP = 10;

/** Options of {@link evaluateRecommendations}. */
export interface RecommendEvalOptions {
  /** The pack; with a detection head, its regions make the object-level side of the ranking. */
  models: Pick<ModelPack, "modelId" | "imageEmbedder"> & {
    detector?: Pick<ObjectDetector, "encodeAndDetect">;
  };
  seed?: number;
  images?: number;
  /** Sessions per user, each from another liked image. */
  sessionsPerUser?: number;
  /** Rocchio variants to compare beside the default (by their negatives' weight γ), on images alone. */
  negativeWeights?: readonly number[];
  /** Region weights to compare beside the default. */
  regionWeights?: readonly number[];
  /** Diversity of the diversified variant. */
  diversity?: number;
}

/** Renders and embeds the set, then runs every user with every strategy. */
export async function evaluateRecommendations({
  models,
  seed = DEFAULT_EVAL_SEED + 7,
  images = 600,
  sessionsPerUser = 8,
  negativeWeights = [0, 1],
  regionWeights = [0.3, 0.8],
  diversity = 0.5,
}: RecommendEvalOptions): Promise<RecommendEvalReport> {
  const started = performance.now();
  const scenes = heldOutImages({ seed, images, questionsPerImage: 0 }).map(({ scene }) => scene);
  const vectors: Float32Array[] = [];
  const regions: Float32Array[][] = [];
  const detector = models.detector;
  for (let start = 0; start < scenes.length; start += 64) {
    const batch = await Promise.all(
      scenes
        .slice(start, start + 64)
        .map(
          async (scene, offset) =>
            (await renderScene(scene, { size: 256, format: "jpeg", seed: start + offset })).data,
        ),
    );
    if (detector === undefined) {
      vectors.push(...(await models.imageEmbedder.embed({ images: batch })));
      regions.push(...batch.map(() => []));
    } else {
      const { embeddings, detections } = await detector.encodeAndDetect({ images: batch });
      vectors.push(...embeddings);
      for (const image of detections) {
        regions.push(
          image.detections.flatMap((detection) =>
            detection.embedding === undefined ? [] : [detection.embedding],
          ),
        );
      }
    }
  }
  const embedMs = performance.now() - started;

  const ids = scenes.map((_scene, index) => `img_${index}`);
  const indexOf = new Map(ids.map((id, index) => [id, index]));
  const nearest = (query: Float32Array, seen: ReadonlySet<number>, count: number): number[] =>
    vectors
      .map((vector, index) => ({ index, score: dotProduct(query, vector) }))
      .filter(({ index }) => !seen.has(index))
      .sort((left, right) => right.score - left.score)
      .slice(0, count)
      .map(({ index }) => index);
  const rocchio = (
    name: string,
    weights: RocchioWeights,
    { diversityOf = 0, regionWeight = 0 }: { diversityOf?: number; regionWeight?: number } = {},
  ): Ranker => ({
    name,
    rank: ({ events, seen }) => {
      const now = Date.now();
      const profile = buildProfile({ events: events.map((event) => ({ ...event, at: now })), now });
      const weighted = (items: typeof profile.positives) =>
        items.map(({ item, weight }) => ({
          vector: vectors[indexOf.get(item) as number] as Float32Array,
          weight,
        }));
      const query = rocchioQuery({
        positives: weighted(profile.positives),
        negatives: weighted(profile.negatives),
        weights,
      });
      const withRegions = (items: typeof profile.positives) =>
        items.map(({ item, weight }) => ({ regions: regions[indexOf.get(item) as number] ?? [], weight }));
      const objects =
        regionWeight === 0
          ? undefined
          : regionQuery({
              positives: withRegions(profile.positives),
              negatives: withRegions(profile.negatives),
            });
      const imageScores = new Map(
        ids.map((id, index) => [id, dotProduct(query, vectors[index] as Float32Array)]),
      );
      const scores =
        objects === undefined
          ? imageScores
          : blendScores({
              image: imageScores,
              region: new Map(
                ids.flatMap((id, index) => {
                  const own = regions[index] ?? [];
                  return own.length === 0
                    ? []
                    : [[id, Math.max(...own.map((region) => dotProduct(objects, region)))]];
                }),
              ),
              regionWeight,
            });
      const pool = ids
        .map((id, index) => ({ index, score: scores.get(id) ?? Number.NEGATIVE_INFINITY }))
        .filter(({ index }) => !seen.has(index))
        .sort((left, right) => right.score - left.score)
        .slice(0, candidatePoolSize({ topK: TOP, diversity: diversityOf }));
      if (diversityOf === 0) return pool.slice(0, TOP).map(({ index }) => index);
      return diversify({
        candidates: pool.map(({ index, score }) => ({
          item: index,
          relevance: score,
          vector: vectors[index] as Float32Array,
        })),
        topK: TOP,
        diversity: diversityOf,
      }).map(({ item }) => item);
    },
  });
  const defaultRegions = detector === undefined ? 0 : REGION_WEIGHT;
  const rankers: Ranker[] = [
    rocchio(
      detector === undefined
        ? `rocchio (γ=${DEFAULT_ROCCHIO_WEIGHTS.negative}, default)`
        : `images + regions (w=${REGION_WEIGHT}, default)`,
      DEFAULT_ROCCHIO_WEIGHTS,
      { regionWeight: defaultRegions },
    ),
    ...(detector === undefined
      ? []
      : regionWeights.map((weight) =>
          rocchio(`images + regions (w=${weight})`, DEFAULT_ROCCHIO_WEIGHTS, { regionWeight: weight }),
        )),
    ...(detector === undefined
      ? []
      : [rocchio(`images only (γ=${DEFAULT_ROCCHIO_WEIGHTS.negative})`, DEFAULT_ROCCHIO_WEIGHTS)]),
    ...negativeWeights
      .filter((weight) => weight !== DEFAULT_ROCCHIO_WEIGHTS.negative)
      .map((weight) => rocchio(`images only (γ=${weight})`, { positive: 1, negative: weight })),
    rocchio(`default + diversity ${diversity}`, DEFAULT_ROCCHIO_WEIGHTS, {
      diversityOf: diversity,
      regionWeight: defaultRegions,
    }),
    {
      name: "similar to last liked",
      rank: ({ events, seen }) => {
        const last = [...events].reverse().find((event) => event.type === "like");
        const vector = vectors[indexOf.get(last?.item ?? "") ?? 0] as Float32Array;
        return nearest(vector, seen, TOP);
      },
    },
    {
      name: "random",
      rank: ({ seen, rng }) =>
        rng.shuffle(scenes.map((_scene, index) => index).filter((index) => !seen.has(index))).slice(0, TOP),
    },
  ];

  const simulateStarted = performance.now();
  const groups: GroupFigures[] = [];
  for (const [group, preferences] of [
    ["single attribute", SINGLE_ATTRIBUTE_PREFERENCES],
    ["combination", COMBINATION_PREFERENCES],
  ] as const) {
    const sums = new Map<string, { interactions: number[][]; likes: number[][] }>();
    for (const ranker of rankers) sums.set(ranker.name, { interactions: [[], [], []], likes: [[], [], []] });
    let baseRate = 0;
    let sessions = 0;
    const perUser: { user: string; afterFiveLikes: number }[] = [];
    for (const preference of preferences) {
      const userFiveLikes: number[] = [];
      const relevant = scenes.map((scene) => isRelevant(scene, preference));
      const relevantIndices = relevant.flatMap((yes, index) => (yes ? [index] : []));
      baseRate += relevantIndices.length / scenes.length;
      const starts = createRng(seed)
        .fork("starts", preference.name)
        .shuffle(relevantIndices)
        .slice(0, sessionsPerUser);
      for (const [session, start] of starts.entries()) {
        sessions += 1;
        for (const ranker of rankers) {
          const rng = createRng(seed).fork("session", preference.name, session);
          const events: UserEvent[] = [{ user: "u", item: ids[start] as string, type: "like", at: 0 }];
          const seen = new Set<number>([start]);
          let likes = 1;
          const figures = sums.get(ranker.name) as { interactions: number[][]; likes: number[][] };
          const precision = (shown: readonly number[]) =>
            shown.filter((index) => relevant[index]).length / TOP;
          for (;;) {
            const shown = ranker.rank({ events, seen, rng });
            const atInteractions = CHECKPOINTS.indexOf(events.length as 1 | 5 | 20);
            if (atInteractions >= 0) figures.interactions[atInteractions]?.push(precision(shown));
            // Likes are counted only on the turn that brought the count there.
            const atLikes = CHECKPOINTS.indexOf(likes as 1 | 5 | 20);
            if (atLikes >= 0 && events.at(-1)?.type === "like") {
              figures.likes[atLikes]?.push(precision(shown));
              if (likes === 5 && ranker === rankers[0]) userFiveLikes.push(precision(shown));
            }
            const done = events.length >= 20 && (likes >= 20 || events.length >= MAX_INTERACTIONS);
            if (done || shown.length === 0) break;
            const first = shown[0] as number;
            const liked = relevant[first] === true;
            events.push({ user: "u", item: ids[first] as string, type: liked ? "like" : "dislike", at: 0 });
            seen.add(first);
            if (liked) likes += 1;
          }
        }
      }
      perUser.push({
        user: preference.name,
        afterFiveLikes:
          userFiveLikes.reduce((sum, value) => sum + value, 0) / Math.max(1, userFiveLikes.length),
      });
    }
    const mean = (values: number[] | undefined) =>
      values === undefined || values.length === 0
        ? Number.NaN
        : values.reduce((sum, value) => sum + value, 0) / values.length;
    groups.push({
      group,
      users: preferences.length,
      sessions,
      baseRate: baseRate / preferences.length,
      perUser,
      strategies: rankers.map((ranker) => {
        const figures = sums.get(ranker.name) as { interactions: number[][]; likes: number[][] };
        return {
          strategy: ranker.name,
          afterInteractions: {
            "1": mean(figures.interactions[0]),
            "5": mean(figures.interactions[1]),
            "20": mean(figures.interactions[2]),
          },
          afterLikes: {
            "1": mean(figures.likes[0]),
            "5": mean(figures.likes[1]),
            "20": mean(figures.likes[2]),
          },
        };
      }),
    });
  }
  const single = groups[0] as GroupFigures;
  const byName = (name: string) => single.strategies.find((strategy) => strategy.strategy.startsWith(name));
  const main = single.strategies[0] as StrategyFigures;
  const lastLiked = byName("similar to last liked") as StrategyFigures;
  return {
    modelId: models.modelId,
    seed,
    images,
    sessionsPerUser,
    groups,
    targets: [
      {
        name: "single attribute: P@10 after 5 likes",
        value: main.afterLikes["5"],
        target: "≥ 0.80",
        met: main.afterLikes["5"] >= 0.8,
      },
      {
        name: "single attribute: P@10 after 20 interactions",
        value: main.afterInteractions["20"],
        target: `> similar to last liked (${lastLiked.afterInteractions["20"].toFixed(3)})`,
        met: main.afterInteractions["20"] > lastLiked.afterInteractions["20"],
      },
    ],
    timings: { embedMs, simulateMs: performance.now() - simulateStarted },
  };
}
