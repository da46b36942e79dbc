/**
 * Collections per model, and the one pointer that says which are live.
 *
 * Every collection records the model whose embeddings it holds (`loupe.model_id`). A prefix's first
 * model lives in `<prefix>_<kind>`; a pack switch (`loupe models migrate`) builds the collections of the
 * new model beside them, `<prefix>_<kind>__<model slug>`, while the old ones keep answering, and then
 * commits: it writes one row, the pointer, into `<prefix>_catalog`. That single upsert is the commit
 * point, so every kind switches together; start-up reads the pointer first and opens the collections
 * it names (without a pointer, the `<prefix>_<kind>` ones). Where the server supports aliases,
 * `<prefix>_<kind>_live` follow the pointer for other tools; they are set after each commit and repaired
 * from the pointer at every start-up, so a crash between the commit and the aliases heals itself.
 */
import type { MilvusClient } from "@zilliz/milvus2-sdk-node";
import { StoreError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import {
  collectionNames,
  DEFAULT_COLLECTION_PREFIX,
  ensureCollections,
  type IndexType,
  type MetricType,
  MODEL_ID_PROPERTY,
} from "./collections.ts";
import {
  type ActivePointer,
  type CatalogCall,
  catalogCall as call,
  hasCollection,
  readActivePointer,
  syncLiveAliases,
  writeActivePointer,
} from "./live-pointer.ts";
import {
  createMilvusClient,
  DEFAULT_MILVUS_LONG_TIMEOUT_MS,
  DEFAULT_MILVUS_TIMEOUT_MS,
  type MilvusConnectionOptions,
} from "./milvus-client.ts";
import { MilvusVectorStore } from "./milvus-vector-store.ts";
import type { RecordKind } from "./record-id.ts";

/** Collection property set on collections that stopped being live at a switch (ms since the epoch). */
export const RETIRED_PROPERTY = "loupe.retired_at";

/** Options of {@link ModelCatalog}. */
export interface ModelCatalogOptions {
  client: MilvusClient;
  prefix?: string;
  metric?: MetricType;
  indexType?: IndexType;
  timeoutMs?: number;
  longTimeoutMs?: number;
  address?: string;
  logger?: Logger;
}

/** The live collections as {@link ModelCatalog.live} reports them. */
export interface LiveCollections {
  /** The model they hold; undefined for empty collections from before model ids were recorded. */
  modelId: string | undefined;
  collections: Record<RecordKind, string>;
  dimension: number;
  /** Whether a pack switch was ever committed (else they are the `<prefix>_<kind>` collections). */
  switched: boolean;
}

/**
 * The collections of each model under one prefix: which are live, a store over the live ones or over a
 * model's own, the commit of a switch and the drop of a model's collections. What a pack migration works
 * with; the server's store opens the live collections alone.
 */
export class ModelCatalog {
  readonly #client: MilvusClient;
  readonly #prefix: string;
  readonly #metric: MetricType;
  readonly #indexType: IndexType;
  readonly #timeoutMs: number;
  readonly #longTimeoutMs: number;
  readonly #address: string | undefined;
  readonly #logger: Logger | undefined;

  constructor({
    client,
    prefix = DEFAULT_COLLECTION_PREFIX,
    metric = "COSINE",
    indexType = "AUTOINDEX",
    timeoutMs = DEFAULT_MILVUS_TIMEOUT_MS,
    longTimeoutMs = Math.max(timeoutMs, DEFAULT_MILVUS_LONG_TIMEOUT_MS),
    address,
    logger,
  }: ModelCatalogOptions) {
    this.#client = client;
    this.#prefix = prefix;
    this.#metric = metric;
    this.#indexType = indexType;
    this.#timeoutMs = timeoutMs;
    this.#longTimeoutMs = longTimeoutMs;
    this.#address = address;
    this.#logger = logger;
  }

  /** Connects a catalog of its own (closed by {@link ModelCatalog.close}). */
  static connect(options: MilvusConnectionOptions & Omit<ModelCatalogOptions, "client">): ModelCatalog {
    const { address, token, database, tls, timeoutMs = DEFAULT_MILVUS_TIMEOUT_MS } = options;
    const client = createMilvusClient({ address, token, database, tls, timeoutMs });
    return new ModelCatalog({ ...options, client });
  }

  get #context(): CatalogCall {
    return { client: this.#client, prefix: this.#prefix, timeoutMs: this.#timeoutMs, address: this.#address };
  }

  /** `host:port` of the Milvus the catalog talks to, when it was given one. */
  get address(): string | undefined {
    return this.#address;
  }

  /** The pointer, or undefined before the first switch. */
  pointer(): Promise<ActivePointer | undefined> {
    return readActivePointer(this.#context);
  }

  /** The collections of `modelId` (as a switch to it makes them). */
  collectionsOf(modelId: string): Record<RecordKind, string> {
    return collectionNames({ prefix: this.#prefix, model: modelId });
  }

  /**
   * The live collections and the model they hold.
   *
   * @throws StoreError `store_not_found` when there are none yet (nothing was ever stored).
   */
  async live(): Promise<LiveCollections> {
    const pointer = await this.pointer();
    const collections = pointer?.collections ?? collectionNames({ prefix: this.#prefix });
    const image = collections.image;
    if (!(await hasCollection(this.#context, image))) {
      throw new StoreError(
        `There is no collection ${image}: nothing was stored under prefix ${this.#prefix} yet, so there is nothing to migrate: start Loupe on the new pack.`,
        {
          code: "store_not_found",
          status: 404,
          context: { collection: image },
        },
      );
    }
    const described = await call(this.#context, `describeCollection ${image}`, () =>
      this.#client.describeCollection({ collection_name: image, timeout: this.#timeoutMs }),
    );
    const vector = (described.schema?.fields ?? []).find((field) => field.name === "vector");
    const dimension = Number((vector as { dim?: unknown } | undefined)?.dim);
    return {
      modelId: pointer?.modelId ?? (await this.#modelOf(image)),
      collections,
      dimension,
      switched: pointer !== undefined,
    };
  }

  /** A store over `collections` (made when missing, checked, loaded), recording `modelId` in new ones. */
  async open({
    collections,
    dimension,
    modelId,
  }: {
    collections: Record<RecordKind, string>;
    dimension: number;
    modelId?: string;
  }): Promise<MilvusVectorStore & { modelId: string | undefined }> {
    const ensured = await ensureCollections({
      client: this.#client,
      prefix: this.#prefix,
      names: collections,
      ...(modelId === undefined ? {} : { modelId }),
      dimension,
      metric: this.#metric,
      indexType: this.#indexType,
      timeoutMs: this.#timeoutMs,
      longTimeoutMs: this.#longTimeoutMs,
      address: this.#address,
      logger: this.#logger,
    });
    const store = new MilvusVectorStore({
      client: this.#client,
      collections,
      dimension,
      metric: this.#metric,
      timeoutMs: this.#timeoutMs,
      longTimeoutMs: this.#longTimeoutMs,
      address: this.#address,
      logger: this.#logger,
    });
    return Object.assign(store, { modelId: ensured.modelId });
  }

  /**
   * Commits a switch to `modelId`: writes the pointer (one row: every kind switches together), then
   * points the live aliases at its collections and marks the collections that were live as retired
   * ({@link RETIRED_PROPERTY}): they stop following writes, so a later switch back to their model must
   * not take them as a copy already made ({@link ModelCatalog.clearRetired}).
   */
  async commit({ modelId, collections }: { modelId: string; collections: Record<RecordKind, string> }) {
    const previous = (await this.live().catch(() => undefined))?.collections;
    await writeActivePointer(this.#context, { modelId, collections, committedAt: Date.now() });
    await this.repairAliases();
    for (const name of Object.values(previous ?? {})) {
      if (Object.values(collections).includes(name)) continue;
      await call(this.#context, `alterCollectionProperties ${name}`, () =>
        this.#client.alterCollectionProperties({
          collection_name: name,
          properties: { [RETIRED_PROPERTY]: String(Date.now()) },
          timeout: this.#timeoutMs,
        }),
      ).catch((error: unknown) =>
        this.#logger?.warn(
          { err: error, collection: name },
          "could not mark a collection no longer live as retired",
        ),
      );
    }
  }

  /**
   * Drops `collections` if any of them was live once and retired by a later switch: its rows no longer
   * follow the corpus, so a switch back to its model re-embeds everything rather than keep them.
   *
   * @returns the collections dropped.
   */
  async clearRetired({ collections }: { collections: Record<RecordKind, string> }): Promise<string[]> {
    let retired = false;
    for (const name of Object.values(collections)) {
      if (!(await hasCollection(this.#context, name))) continue;
      const described = await call(this.#context, `describeCollection ${name}`, () =>
        this.#client.describeCollection({ collection_name: name, timeout: this.#timeoutMs }),
      );
      if ((described.properties ?? []).some((pair) => pair.key === RETIRED_PROPERTY)) retired = true;
    }
    if (!retired) return [];
    const dropped: string[] = [];
    for (const name of Object.values(collections)) {
      if (!(await hasCollection(this.#context, name))) continue;
      await call(this.#context, `dropCollection ${name}`, () =>
        this.#client.dropCollection({ collection_name: name, timeout: this.#timeoutMs }),
      );
      dropped.push(name);
    }
    this.#logger?.info(
      { collections: dropped },
      "dropped retired collections before copying into them again",
    );
    return dropped;
  }

  /** Points the live aliases where the pointer says (nothing before the first switch). */
  async repairAliases(): Promise<boolean> {
    const pointer = await this.pointer();
    if (pointer === undefined) return true;
    return syncLiveAliases({ ...this.#context, collections: pointer.collections, logger: this.#logger });
  }

  /**
   * Drops the collections holding `modelId`'s embeddings under this prefix.
   *
   * @returns the collections dropped.
   * @throws StoreError `store_conflict` when they are the live ones.
   */
  async drop({ modelId }: { modelId: string }): Promise<string[]> {
    const live = await this.live();
    if (live.modelId === modelId) {
      throw new StoreError(
        `The collections of model ${JSON.stringify(modelId)} are the live ones (${Object.values(live.collections).join(", ")}); switch to another pack first.`,
        { code: "store_conflict", status: 409, context: { modelId } },
      );
    }
    const candidates = [
      ...Object.values(collectionNames({ prefix: this.#prefix })),
      ...Object.values(this.collectionsOf(modelId)),
    ];
    const dropped: string[] = [];
    for (const name of candidates) {
      if (Object.values(live.collections).includes(name)) continue;
      if (!(await hasCollection(this.#context, name))) continue;
      if ((await this.#modelOf(name)) !== modelId) continue;
      await call(this.#context, `dropCollection ${name}`, () =>
        this.#client.dropCollection({ collection_name: name, timeout: this.#timeoutMs }),
      );
      this.#logger?.info({ collection: name, modelId }, "dropped the collection of a model no longer live");
      dropped.push(name);
    }
    return dropped;
  }

  /** The model a collection holds: its property, else one row's `model_id`. */
  async #modelOf(name: string): Promise<string | undefined> {
    const described = await call(this.#context, `describeCollection ${name}`, () =>
      this.#client.describeCollection({ collection_name: name, timeout: this.#timeoutMs }),
    );
    const recorded = (described.properties ?? []).find((pair) => pair.key === MODEL_ID_PROPERTY)?.value;
    if (typeof recorded === "string" && recorded !== "") return recorded;
    await call(this.#context, `loadCollection ${name}`, () =>
      this.#client.loadCollectionSync({ collection_name: name, timeout: this.#timeoutMs }),
    );
    const rows = await call(this.#context, `query ${name}`, () =>
      this.#client.query({
        collection_name: name,
        filter: 'model_id != ""',
        output_fields: ["model_id"],
        limit: 1,
        timeout: this.#longTimeoutMs,
      }),
    );
    const value = rows.data[0]?.model_id;
    return typeof value === "string" && value !== "" ? value : undefined;
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await this.#client.closeConnection().catch(() => undefined);
  }
}
