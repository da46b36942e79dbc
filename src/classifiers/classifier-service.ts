/**
 * Few-shot classifiers a tenant teaches with a handful of examples per label: created, listed, read,
 * extended with examples, deleted and asked to predict; and, for those created with `applyOnIngest`,
 * applied to every new item, whose predicted label is written into its metadata (`class_<name>`).
 *
 * Examples are images: stored items named by id (of the caller's tenant only), or bytes and URLs the
 * request sends. Every example's image is kept in the blob store under the classifier, so the classifier
 * can be fitted again when the model pack changes: its examples are embedded again with the new pack,
 * on first use, and the classifier saved under the new model id.
 */
import { ConflictError, MediaError, NotFoundError, ValidationError } from "../errors.ts";
import type { Detection, ObjectDetector } from "../inference/detection-head.ts";
import { sniffImageFormat } from "../inference/image-processor.ts";
import type { ModelPack } from "../inference/model-pack.ts";
import type { Logger } from "../logger.ts";
import type { ImageReference, MediaReader, MediaWriter } from "../media/media-port.ts";
import type { SearchService } from "../search/search-service.ts";
import {
  CLASSIFIER_KINDS,
  CLASSIFIER_LABEL_TEMPLATE,
  CLASSIFIER_NAME_PATTERN,
  type ClassifierKind,
  classMetadataKey,
  decodeVector,
  encodeVector,
  MAX_CLASSIFIER_EXAMPLES,
  MAX_CLASSIFIER_LABEL_LENGTH,
  MAX_CLASSIFIER_LABELS,
  MAX_CLASSIFIERS_PER_TENANT,
  MAX_EXAMPLES_PER_LABEL,
  MAX_EXAMPLES_PER_REQUEST,
  type StoredClassifier,
  type StoredExample,
  type StoredLabel,
} from "./classifier.ts";
import { type ClassifierStore, classifierExists, tooManyClassifiers } from "./classifier-store.ts";
import {
  type FeatureSet,
  featureVector,
  fitImageExamples,
  type LinearModel,
  predictProbabilities,
} from "./fitting.ts";
import { type ObjectVocabulary, objectFeatures } from "./object-features.ts";

/** Fetches the image behind an http(s) URL (SSRF-safe, within the configured limits). */
export type ClassifierImageFetcher = (options: { url: string }) => Promise<{ bytes: Uint8Array }>;

/** Options of {@link ClassifierService}. */
export interface ClassifierServiceOptions {
  store: ClassifierStore;
  /** Looks up the caller's items (an id of another tenant is not found) and gives the zero-shot scale. */
  search: Pick<SearchService, "getItem" | "logitScale">;
  models: Pick<ModelPack, "modelId" | "imageEmbedder" | "textEmbedder">;
  /** Reads items' images and keeps the examples' images under the classifier. */
  media: MediaReader & MediaWriter;
  /**
   * The pack's detection head, when it has one: the objects it finds give a second feature set (counts,
   * classes, attributes), tried beside the embedding.
   */
  detector?: Pick<ObjectDetector, "encodeAndDetect" | "detect" | "config">;
  /** Fetches example and query images given as URLs; without it, URLs are refused. */
  fetchImage?: ClassifierImageFetcher;
  logger?: Logger;
}

/** Examples of one label in a request. */
export interface LabelExamplesInput {
  label: string;
  examples: readonly ImageReference[];
}

/** Arguments of {@link ClassifierService.create}. */
export interface CreateClassifierInput {
  tenant: string;
  name: string;
  labels: readonly LabelExamplesInput[];
  kinds?: readonly string[];
  applyOnIngest?: boolean;
  /** Probability under which the best label is `none`; the fitted one when absent. */
  threshold?: number;
  /** Replace a classifier of the same name instead of refusing with 409. */
  replace?: boolean;
}

/** A classifier as the API shows it. */
export interface ClassifierSummary {
  name: string;
  labels: Array<{ label: string; examples: number; itemIds: string[] }>;
  kinds: ClassifierKind[];
  applyOnIngest: boolean;
  /** The metadata key its predictions are written under at ingest. */
  metadataKey: string;
  modelId: string;
  /** What its vectors are made of: `embedding`, `objects` (the detection head's summary) or `both`. */
  features: FeatureSet;
  method: string;
  looAccuracy: number;
  validation: string;
  threshold: number;
  scores: StoredClassifier["fitted"]["scores"];
  createdAt: string;
  updatedAt: string;
}

/** What {@link ClassifierService.predict} returns. */
export interface ClassifierPrediction {
  /** Every label with its calibrated probability, most probable first. */
  labels: Array<{ label: string; probability: number }>;
  /** Present (true) when the best probability is below the threshold. */
  none?: true;
  threshold: number;
  modelId: string;
}

interface Loaded {
  stored: StoredClassifier;
  model: LinearModel;
}

function summarize(stored: StoredClassifier): ClassifierSummary {
  return {
    name: stored.name,
    labels: stored.labels.map((entry) => ({
      label: entry.label,
      examples: entry.examples.length,
      itemIds: entry.examples.flatMap((example) => (example.itemId === undefined ? [] : [example.itemId])),
    })),
    kinds: stored.kinds,
    applyOnIngest: stored.applyOnIngest,
    metadataKey: classMetadataKey(stored.name),
    modelId: stored.modelId,
    features: stored.features ?? "embedding",
    method: stored.fitted.model.method,
    looAccuracy: stored.fitted.looAccuracy,
    validation: stored.fitted.validation,
    threshold: stored.threshold ?? stored.fitted.threshold,
    scores: stored.fitted.scores,
    createdAt: stored.createdAt,
    updatedAt: stored.updatedAt,
  };
}

function modelOf(stored: StoredClassifier): LinearModel {
  const { model } = stored.fitted;
  return {
    method: model.method,
    weights: model.weights.map(decodeVector),
    bias: Float64Array.from(model.bias),
    temperature: model.temperature,
  };
}

/** An image's vectors: its embedding and, with a detection head, the summary of its objects. */
interface ImageFeatures {
  vector: Float32Array;
  objects?: Float32Array;
}

/** An example with its (new) vectors. */
function storedFeatures(example: StoredExample, features: ImageFeatures | undefined): StoredExample {
  if (features === undefined) throw new Error("unreachable: no features for an example");
  const { objects: _previous, ...rest } = example;
  return {
    ...rest,
    vector: encodeVector(features.vector),
    ...(features.objects === undefined ? {} : { objects: encodeVector(features.objects) }),
  };
}

/** The detection head's vocabulary, the layout of the object summaries. */
function vocabularyOf(detector: Pick<ObjectDetector, "config">): ObjectVocabulary {
  return { classes: detector.config.classes, attributes: detector.config.attributes };
}

/** The name, checked. */
export function checkClassifierName(name: string): string {
  if (!CLASSIFIER_NAME_PATTERN.test(name)) {
    throw new ValidationError(
      `Invalid classifier name ${JSON.stringify(name.slice(0, 80))}: a letter, then letters, digits and _, at most 58 characters (it becomes the metadata key class_<name>).`,
      { context: { name: name.slice(0, 80) } },
    );
  }
  return name;
}

/** The owner the classifier's example images are kept under in the blob store. */
function blobOwner(tenant: string, name: string): string {
  return `${tenant}/classifier:${name}`;
}

function contentTypeOf(bytes: Uint8Array): string {
  const format = sniffImageFormat(bytes);
  return format === undefined ? "application/octet-stream" : `image/${format}`;
}

/** See the module's description. Build one and reuse it. */
export class ClassifierService {
  readonly #options: ClassifierServiceOptions;
  /** Fitted models by `tenant/name`, as of the stored `updatedAt`. */
  readonly #cache = new Map<string, Loaded>();
  /** Refits under a new pack in flight, by `tenant/name`, so concurrent uses share one. */
  readonly #refits = new Map<string, Promise<Loaded>>();
  /** Per tenant, the names of classifiers applied at ingest (read from the store once, kept current). */
  readonly #applied = new Map<string, Promise<string[]>>();

  constructor(options: ClassifierServiceOptions) {
    this.#options = options;
  }

  /**
   * Fits and stores a classifier.
   *
   * @throws ValidationError for a bad name, label, kind, threshold or an empty label; ConflictError when
   *   the name is taken and `replace` is not set; NotFoundError for an example id the tenant does not have;
   *   MediaError for an example image that fails to decode.
   */
  async create(input: CreateClassifierInput): Promise<ClassifierSummary> {
    const { tenant, replace = false } = input;
    const name = checkClassifierName(input.name);
    checkLabels(input.labels, { requireExamples: true });
    const kinds = checkKinds(input.kinds);
    const threshold = checkThreshold(input.threshold);
    const existing = await this.#options.store.get({ tenant, name });
    if (existing !== undefined && !replace) throw classifierExists(name);
    if (existing === undefined) {
      // Refused here before any embedding; the store checks again as it saves, as one step with the write.
      const count = (await this.#options.store.list({ tenant })).length;
      if (count >= MAX_CLASSIFIERS_PER_TENANT)
        throw tooManyClassifiers({ count, max: MAX_CLASSIFIERS_PER_TENANT });
    }
    const owner = blobOwner(tenant, name);
    const labels = await this.#embedLabels({ tenant, owner, labels: input.labels });
    const now = new Date().toISOString();
    const stored = await this.#fit({
      name,
      tenant,
      createdAt: replace && existing !== undefined ? existing.createdAt : now,
      updatedAt: now,
      labels,
      kinds,
      applyOnIngest: input.applyOnIngest ?? false,
      ...(threshold === undefined ? {} : { threshold }),
    });
    try {
      await this.#save(
        stored,
        // Checked again as one step with the write: another replica may have created some, or this name.
        existing === undefined ? { maxPerTenant: MAX_CLASSIFIERS_PER_TENANT, ifAbsent: !replace } : {},
      );
    } catch (error) {
      // Refused (past the cap, or the name taken meanwhile): nothing holds the images.
      if (existing === undefined && (error instanceof ValidationError || error instanceof ConflictError))
        await this.#releaseUnused({ previous: stored });
      throw error;
    }
    if (existing !== undefined) await this.#releaseUnused({ previous: existing, current: stored });
    return summarize(stored);
  }

  /** The tenant's classifiers, by name. */
  async list({ tenant }: { tenant: string }): Promise<ClassifierSummary[]> {
    const stored = await this.#options.store.list({ tenant });
    return stored.map(summarize);
  }

  /**
   * One classifier, fitted again first when the model pack changed since it was saved.
   *
   * @throws NotFoundError when the tenant has none of that name.
   */
  async get({ tenant, name }: { tenant: string; name: string }): Promise<ClassifierSummary> {
    return summarize((await this.#load({ tenant, name })).stored);
  }

  /**
   * Deletes a classifier and lets go of its example images.
   *
   * @throws NotFoundError when the tenant has none of that name.
   */
  async delete({ tenant, name }: { tenant: string; name: string }): Promise<void> {
    const stored = await this.#options.store.get({ tenant, name });
    if (stored === undefined) throw this.#notFound(name);
    await this.#options.store.delete({ tenant, name });
    this.#forget(tenant, name);
    await this.#releaseUnused({ previous: stored });
  }

  /**
   * Adds examples (and, with `addLabels`, new labels) and fits the classifier again.
   *
   * @throws NotFoundError for an unknown classifier; ValidationError for a label it does not have
   *   (without `addLabels`) or limits passed.
   */
  async addExamples({
    tenant,
    name,
    labels,
    addLabels = false,
  }: {
    tenant: string;
    name: string;
    labels: readonly LabelExamplesInput[];
    addLabels?: boolean;
  }): Promise<ClassifierSummary> {
    checkLabels(labels, { requireExamples: true, minLabels: 1 });
    const { stored } = await this.#load({ tenant, name });
    const known = new Set(stored.labels.map((entry) => entry.label));
    const unknown = labels.filter((entry) => !known.has(entry.label.trim()));
    if (unknown.length > 0 && !addLabels) {
      throw new ValidationError(
        `Unknown label ${JSON.stringify(unknown[0]?.label)} for classifier "${name}"; its labels are ${[...known].map((label) => JSON.stringify(label)).join(", ")}. Send "addLabels": true to add a label.`,
        { context: { label: unknown[0]?.label } },
      );
    }
    const added = await this.#embedLabels({ tenant, owner: blobOwner(tenant, name), labels });
    const merged: StoredLabel[] = stored.labels.map((entry) => ({ ...entry, examples: [...entry.examples] }));
    for (const entry of added) {
      const target = merged.find((existing) => existing.label === entry.label);
      if (target === undefined) merged.push(entry);
      else target.examples.push(...entry.examples);
    }
    checkStoredLimits(merged);
    const updated = await this.#fit({ ...stored, labels: merged, updatedAt: new Date().toISOString() });
    await this.#save(updated);
    return summarize(updated);
  }

  /**
   * Calibrated probabilities of every label for an image, most probable first; `none` when the best is
   * under the classifier's threshold.
   *
   * @throws NotFoundError for an unknown classifier or an item id the tenant does not have; MediaError
   *   for an image that fails to decode.
   */
  async predict({
    tenant,
    name,
    image,
  }: {
    tenant: string;
    name: string;
    image: ImageReference;
  }): Promise<ClassifierPrediction> {
    const loaded = await this.#load({ tenant, name });
    const bytes = await this.#imageBytes({ tenant, image, field: "image" });
    const withObjects = (loaded.stored.features ?? "embedding") !== "embedding";
    const [features] = await this.#embedNamed([{ bytes, field: "image", label: "" }], { withObjects });
    if (features === undefined) throw new Error("unreachable: no features for the image");
    return this.predictVector({
      loaded,
      vector: features.vector,
      ...(features.objects === undefined ? {} : { objects: features.objects }),
    });
  }

  /** The prediction of an already embedded image (what predict adds on top of the embedding). */
  predictVector({
    loaded,
    vector,
    objects,
  }: {
    loaded: Loaded;
    vector: Float32Array;
    /** The image's object summary, for a classifier fitted on objects. */
    objects?: Float32Array;
  }): ClassifierPrediction {
    const probabilities = predictProbabilities(
      loaded.model,
      featureVector(loaded.stored.features ?? "embedding", vector, objects),
    );
    const labels = loaded.stored.labels
      .map((entry, index) => ({ label: entry.label, probability: probabilities[index] ?? 0 }))
      .sort((left, right) => right.probability - left.probability);
    const threshold = loaded.stored.threshold ?? loaded.stored.fitted.threshold;
    const best = labels[0]?.probability ?? 0;
    return {
      labels,
      ...(best < threshold ? { none: true as const } : {}),
      threshold,
      modelId: loaded.stored.modelId,
    };
  }

  /** A classifier ready to predict (for measurements of {@link ClassifierService.predictVector}). */
  async loaded({ tenant, name }: { tenant: string; name: string }): Promise<Loaded> {
    return this.#load({ tenant, name });
  }

  /**
   * The metadata the tenant's `applyOnIngest` classifiers give new items of `kind`: for each item's
   * embedding, `{ class_<name>: label }` for every such classifier whose best label reaches its
   * threshold. Used by ingest through the hook wired in `services.ts`.
   */
  async annotate({
    tenant,
    kind,
    vectors,
    images,
  }: {
    tenant: string;
    kind: string;
    vectors: readonly Float32Array[];
    /** The images' bytes, for classifiers fitted on the objects in them (found once, when needed). */
    images?: readonly Uint8Array[];
  }): Promise<Array<Record<string, string>>> {
    const out = vectors.map(() => ({}) as Record<string, string>);
    const names = await this.#appliedNames(tenant);
    let objects: Array<Float32Array | undefined> | undefined;
    const objectsOf = async (): Promise<Array<Float32Array | undefined>> => {
      const { detector } = this.#options;
      if (objects !== undefined) return objects;
      if (detector === undefined || images === undefined || images.length !== vectors.length) {
        objects = vectors.map(() => undefined);
        return objects;
      }
      const vocabulary = vocabularyOf(detector);
      const found = await detector.detect({ images });
      objects = found.map((image) => objectFeatures(image.detections, vocabulary));
      return objects;
    };
    for (const name of names) {
      let loaded: Loaded;
      try {
        loaded = await this.#load({ tenant, name });
      } catch (error) {
        if (error instanceof NotFoundError) continue;
        throw error;
      }
      if (!loaded.stored.applyOnIngest || !(loaded.stored.kinds as string[]).includes(kind)) continue;
      const needsObjects = (loaded.stored.features ?? "embedding") !== "embedding";
      const found = needsObjects ? await objectsOf() : [];
      for (const [index, vector] of vectors.entries()) {
        const imageObjects = found[index];
        if (needsObjects && imageObjects === undefined) continue;
        const prediction = this.predictVector({
          loaded,
          vector,
          ...(imageObjects === undefined ? {} : { objects: imageObjects }),
        });
        const best = prediction.labels[0];
        if (best !== undefined && prediction.none !== true) {
          (out[index] as Record<string, string>)[classMetadataKey(name)] = best.label;
        }
      }
    }
    return out;
  }

  #notFound(name: string): NotFoundError {
    return new NotFoundError(
      `No classifier named ${JSON.stringify(name.slice(0, 80))}; GET /v1/classifiers lists the ones there are.`,
      { context: { name: name.slice(0, 80) } },
    );
  }

  #forget(tenant: string, name: string): void {
    this.#cache.delete(`${tenant}/${name}`);
    this.#applied.delete(tenant);
  }

  async #appliedNames(tenant: string): Promise<string[]> {
    let names = this.#applied.get(tenant);
    if (names === undefined) {
      names = this.#options.store
        .list({ tenant })
        .then((all) => all.filter((entry) => entry.applyOnIngest).map((entry) => entry.name));
      names.catch(() => this.#applied.delete(tenant));
      this.#applied.set(tenant, names);
    }
    return names;
  }

  async #save(
    stored: StoredClassifier,
    options: { maxPerTenant?: number; ifAbsent?: boolean } = {},
  ): Promise<void> {
    await this.#options.store.put(stored, options);
    this.#forget(stored.tenant, stored.name);
    this.#cache.set(`${stored.tenant}/${stored.name}`, { stored, model: modelOf(stored) });
  }

  /** The stored classifier with its model, fitted again under the loaded pack when its model differs. */
  async #load({ tenant, name }: { tenant: string; name: string }): Promise<Loaded> {
    const key = `${tenant}/${name}`;
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.stored.modelId === this.#options.models.modelId) return cached;
    const stored = await this.#options.store.get({ tenant, name });
    if (stored === undefined) throw this.#notFound(name);
    if (stored.modelId === this.#options.models.modelId) {
      const loaded = { stored, model: modelOf(stored) };
      this.#cache.set(key, loaded);
      return loaded;
    }
    let refit = this.#refits.get(key);
    if (refit === undefined) {
      refit = this.#refit(stored).finally(() => this.#refits.delete(key));
      this.#refits.set(key, refit);
    }
    return refit;
  }

  /** Embeds every example again from its kept image with the loaded pack, fits and saves. */
  async #refit(stored: StoredClassifier): Promise<Loaded> {
    const { models, media, logger } = this.#options;
    logger?.info(
      { classifier: stored.name, from: stored.modelId, to: models.modelId },
      "fitting a classifier again under the loaded model pack",
    );
    const labels: StoredLabel[] = [];
    for (const entry of stored.labels) {
      const read = await Promise.all(
        entry.examples.map(async (example, index) => {
          try {
            return await media.read({ ref: example.mediaRef });
          } catch (error) {
            throw new ConflictError(
              `Classifier "${stored.name}" was fitted under model ${stored.modelId}; the loaded pack is ${models.modelId}, and the image of example ${index + 1} of label ${JSON.stringify(entry.label)}${example.itemId === undefined ? "" : ` (item ${example.itemId})`} can no longer be read, so it cannot be fitted again. Create it again with POST /v1/classifiers and "replace": true.`,
              { cause: error, context: { name: stored.name, from: stored.modelId, to: models.modelId } },
            );
          }
        }),
      );
      const features = await this.#embedNamed(
        read.map((bytes, index) => ({ bytes, field: `example ${index + 1}`, label: entry.label })),
        { withObjects: true },
      );
      labels.push({
        label: entry.label,
        examples: entry.examples.map((example, index) => storedFeatures(example, features[index])),
      });
    }
    const updated = await this.#fit({ ...stored, labels, updatedAt: new Date().toISOString() });
    await this.#save(updated);
    return { stored: updated, model: modelOf(updated) };
  }

  /** Fits the model over the labels' example embeddings, with the labels' text embeddings as its prior. */
  async #fit(
    classifier: Omit<StoredClassifier, "version" | "modelId" | "dimension" | "fitted">,
  ): Promise<StoredClassifier> {
    const { models, search } = this.#options;
    const embeddings: Float32Array[] = [];
    const objects: Array<Float32Array | undefined> = [];
    const classes: number[] = [];
    for (const [index, entry] of classifier.labels.entries()) {
      for (const example of entry.examples) {
        embeddings.push(decodeVector(example.vector));
        objects.push(example.objects === undefined ? undefined : decodeVector(example.objects));
        classes.push(index);
      }
    }
    const priors = await models.textEmbedder.embed({
      texts: classifier.labels.map((entry) => CLASSIFIER_LABEL_TEMPLATE.replaceAll("{label}", entry.label)),
    });
    const { features, fitted } = fitImageExamples({
      embeddings,
      objects,
      labels: classes,
      classes: classifier.labels.length,
      priors,
      priorScale: await search.logitScale(),
    });
    return {
      version: 1,
      ...classifier,
      features,
      modelId: models.modelId,
      dimension: priors[0]?.length ?? 0,
      fitted: {
        model: {
          method: fitted.model.method,
          weights: fitted.model.weights.map(encodeVector),
          bias: Array.from(fitted.model.bias),
          temperature: fitted.model.temperature,
        },
        looAccuracy: fitted.looAccuracy,
        validation: fitted.validation,
        scores: fitted.scores,
        threshold: fitted.threshold,
      },
    };
  }

  /** Reads, keeps and embeds every example of the labels; errors name the example. */
  async #embedLabels({
    tenant,
    owner,
    labels,
  }: {
    tenant: string;
    owner: string;
    labels: readonly LabelExamplesInput[];
  }): Promise<StoredLabel[]> {
    const { media } = this.#options;
    const examples = await Promise.all(
      labels.flatMap((entry, labelIndex) =>
        entry.examples.map(async (reference, exampleIndex) => {
          const field = `labels[${labelIndex}].examples[${exampleIndex}]`;
          return {
            labelIndex,
            reference,
            field,
            bytes: await this.#imageBytes({ tenant, image: reference, field }),
          };
        }),
      ),
    );
    const features = await this.#embedNamed(
      examples.map(({ bytes, field, labelIndex }) => ({
        bytes,
        field,
        label: labels[labelIndex]?.label ?? "",
      })),
    );
    const out: StoredLabel[] = labels.map((entry) => ({ label: entry.label.trim(), examples: [] }));
    for (const [index, example] of examples.entries()) {
      const { ref } = await media.write({
        bytes: example.bytes,
        contentType: contentTypeOf(example.bytes),
        owner,
      });
      out[example.labelIndex]?.examples.push({
        ...("id" in example.reference ? { itemId: example.reference.id } : {}),
        ...storedFeatures({ mediaRef: ref, vector: "" }, features[index]),
      });
    }
    return out;
  }

  /**
   * Embeds the images in one go; when one fails to decode (which fails the whole batch), embeds them one
   * at a time to name the example at fault.
   */
  async #embedNamed(
    images: ReadonlyArray<{ bytes: Uint8Array; field: string; label: string }>,
    { withObjects = true }: { withObjects?: boolean } = {},
  ): Promise<ImageFeatures[]> {
    try {
      return await this.#features(
        images.map((image) => image.bytes),
        withObjects,
      );
    } catch (error) {
      if (!(error instanceof MediaError)) throw error;
    }
    const out: ImageFeatures[] = [];
    for (const image of images) {
      try {
        const [features] = await this.#features([image.bytes], withObjects);
        if (features === undefined) throw new Error("unreachable: no features for the image");
        out.push(features);
      } catch (error) {
        if (!(error instanceof MediaError)) throw error;
        throw new MediaError(
          image.label === ""
            ? `${image.field}: ${error.message}`
            : `${image.field} (label ${JSON.stringify(image.label)}): ${error.message}`,
          { status: error.status, code: error.code, cause: error, context: { field: image.field } },
        );
      }
    }
    return out;
  }

  /** Embeddings, and with a detection head (when asked) object summaries, from one vision pass per image. */
  async #features(images: readonly Uint8Array[], withObjects: boolean): Promise<ImageFeatures[]> {
    const { detector, models } = this.#options;
    if (detector === undefined || !withObjects) {
      const vectors = await models.imageEmbedder.embed({ images });
      return vectors.map((vector) => ({ vector }));
    }
    const vocabulary = vocabularyOf(detector);
    const { embeddings, detections } = await detector.encodeAndDetect({ images });
    return embeddings.map((vector, index) => ({
      vector,
      objects: objectFeatures(detections[index]?.detections ?? ([] as Detection[]), vocabulary),
    }));
  }

  /** The bytes of an image reference: as sent, fetched, or a stored item's image of the tenant. */
  async #imageBytes({
    tenant,
    image,
    field,
  }: {
    tenant: string;
    image: ImageReference;
    field: string;
  }): Promise<Uint8Array> {
    if ("bytes" in image) return image.bytes;
    if ("url" in image) {
      if (this.#options.fetchImage === undefined) {
        throw new ValidationError(
          `${field} is a URL, which this server does not fetch; send the image itself.`,
        );
      }
      return (await this.#options.fetchImage({ url: image.url })).bytes;
    }
    let record: Awaited<ReturnType<ClassifierServiceOptions["search"]["getItem"]>>;
    try {
      record = await this.#options.search.getItem({ tenant, id: image.id });
    } catch (error) {
      if (error instanceof NotFoundError) {
        throw new NotFoundError(`${field}: no item with id ${image.id}.`, {
          cause: error,
          context: { field },
        });
      }
      throw error;
    }
    const ref = record.kind === "video_segment" ? record.keyframeRef : record.mediaRef;
    if (record.kind === "region" || ref.length === 0) {
      throw new ValidationError(`${field}: item ${image.id} has no image of its own to learn from.`, {
        context: { field },
      });
    }
    return this.#options.media.read({ ref });
  }

  /** Lets go of the example images of `previous` that `current` no longer uses. */
  async #releaseUnused({
    previous,
    current,
  }: {
    previous: StoredClassifier;
    current?: StoredClassifier;
  }): Promise<void> {
    const kept = new Set(
      current?.labels.flatMap((entry) => entry.examples.map((example) => example.mediaRef)),
    );
    const owner = blobOwner(previous.tenant, previous.name);
    const released = new Set<string>();
    for (const example of previous.labels.flatMap((entry) => entry.examples)) {
      if (kept.has(example.mediaRef) || released.has(example.mediaRef)) continue;
      released.add(example.mediaRef);
      await this.#options.media.release({ ref: example.mediaRef, owner }).catch((error: unknown) => {
        this.#options.logger?.warn(
          { err: error, ref: example.mediaRef },
          "could not release an example image",
        );
      });
    }
  }
}

function checkLabels(
  labels: readonly LabelExamplesInput[],
  { requireExamples, minLabels = 2 }: { requireExamples: boolean; minLabels?: number },
): void {
  if (labels.length > MAX_CLASSIFIER_LABELS) {
    throw new ValidationError(
      `A classifier takes at most ${MAX_CLASSIFIER_LABELS} labels; got ${labels.length}. Split the categories over several classifiers.`,
      { context: { labels: labels.length, limit: MAX_CLASSIFIER_LABELS } },
    );
  }
  if (labels.length < minLabels) {
    throw new ValidationError(
      minLabels === 1
        ? "Send at least one label with examples."
        : `A classifier needs at least 2 labels to choose between; got ${labels.length}.`,
    );
  }
  const seen = new Set<string>();
  let total = 0;
  for (const [index, entry] of labels.entries()) {
    const label = entry.label.trim();
    if (label.length === 0 || label.length > MAX_CLASSIFIER_LABEL_LENGTH) {
      throw new ValidationError(
        `labels[${index}].label must be 1–${MAX_CLASSIFIER_LABEL_LENGTH} characters; got ${JSON.stringify(entry.label.slice(0, 80))}.`,
      );
    }
    if (seen.has(label)) {
      throw new ValidationError(
        `Label ${JSON.stringify(label)} is listed twice; list each label once with all its examples.`,
      );
    }
    seen.add(label);
    if (requireExamples && entry.examples.length === 0) {
      throw new ValidationError(
        `Label ${JSON.stringify(label)} has no examples; every label needs at least one example image (an item id, a data URL or a URL).`,
        { context: { label } },
      );
    }
    if (entry.examples.length > MAX_EXAMPLES_PER_LABEL) {
      throw new ValidationError(
        `Label ${JSON.stringify(label)} has ${entry.examples.length} examples; the limit is ${MAX_EXAMPLES_PER_LABEL} per label.`,
      );
    }
    total += entry.examples.length;
  }
  if (total > MAX_EXAMPLES_PER_REQUEST) {
    throw new ValidationError(
      `The request sends ${total} examples; the limit is ${MAX_EXAMPLES_PER_REQUEST} per request. Send the rest with POST /v1/classifiers/{name}/examples.`,
    );
  }
}

function checkStoredLimits(labels: readonly StoredLabel[]): void {
  if (labels.length > MAX_CLASSIFIER_LABELS) {
    throw new ValidationError(
      `A classifier takes at most ${MAX_CLASSIFIER_LABELS} labels; this would make ${labels.length}.`,
    );
  }
  let total = 0;
  for (const entry of labels) {
    if (entry.examples.length > MAX_EXAMPLES_PER_LABEL) {
      throw new ValidationError(
        `Label ${JSON.stringify(entry.label)} would have ${entry.examples.length} examples; the limit is ${MAX_EXAMPLES_PER_LABEL} per label.`,
      );
    }
    total += entry.examples.length;
  }
  if (total > MAX_CLASSIFIER_EXAMPLES) {
    throw new ValidationError(
      `A classifier keeps at most ${MAX_CLASSIFIER_EXAMPLES} examples; this would make ${total}.`,
    );
  }
}

function checkKinds(kinds: readonly string[] | undefined): ClassifierKind[] {
  if (kinds === undefined || kinds.length === 0) return ["image"];
  const out: ClassifierKind[] = [];
  for (const kind of kinds) {
    if (!(CLASSIFIER_KINDS as readonly string[]).includes(kind)) {
      throw new ValidationError(
        `Unknown kind ${JSON.stringify(kind.slice(0, 40))}; a classifier applies to ${CLASSIFIER_KINDS.join(" and ")}.`,
      );
    }
    if (!out.includes(kind as ClassifierKind)) out.push(kind as ClassifierKind);
  }
  return out;
}

function checkThreshold(threshold: number | undefined): number | undefined {
  if (threshold === undefined) return undefined;
  if (!Number.isFinite(threshold) || threshold < 0 || threshold > 1) {
    throw new ValidationError(`threshold must be a probability from 0 to 1; got ${threshold}.`);
  }
  return threshold;
}
