/**
 * The pointer to the live collections of a prefix: one row in `<prefix>_catalog` naming the model the
 * live collections hold and their names, written in one upsert when a pack switch commits (so every kind
 * switches together) and read first at start-up. Where the server supports aliases,
 * `<prefix>_<kind>_live` follow it for other tools, repaired from it at every start-up.
 */
import { DataType, type MilvusClient } from "@zilliz/milvus2-sdk-node";
import { StoreError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { collectionName, DEFAULT_COLLECTION_PREFIX } from "./collections.ts";
import { quoteExpressionString } from "./filter.ts";
import { callMilvus } from "./milvus-client.ts";
import { RECORD_KINDS, type RecordKind } from "./record-id.ts";

/** Key of the pointer row in the catalog collection. */
const ACTIVE_KEY = "active";
const CATALOG_VALUE_MAX = 8192;

/** The catalog collection of a prefix, holding the pointer to the live collections. */
export function catalogCollectionName(prefix: string = DEFAULT_COLLECTION_PREFIX): string {
  return `${prefix}_catalog`;
}

/** The alias that follows the live collection of `kind`, where the server has aliases. */
export function liveAliasName({
  prefix = DEFAULT_COLLECTION_PREFIX,
  kind,
}: {
  prefix?: string;
  kind: RecordKind;
}) {
  return `${collectionName({ prefix, kind })}_live`;
}

/** What the pointer says: the model the live collections hold, and their names. */
export interface ActivePointer {
  modelId: string;
  collections: Record<RecordKind, string>;
  /** When the switch was committed, ms since the Unix epoch. */
  committedAt: number;
}

/** Where the pointer lives and how to call it. */
export interface CatalogCall {
  client: MilvusClient;
  prefix: string;
  timeoutMs: number;
  address?: string;
}

export function catalogCall<T>(
  { timeoutMs, address }: CatalogCall,
  what: string,
  fn: () => Promise<T>,
  unchecked = false,
) {
  return callMilvus({ what, timeoutMs, address, call: fn, unchecked });
}

export async function hasCollection(context: CatalogCall, name: string): Promise<boolean> {
  const answer = await catalogCall(context, `hasCollection ${name}`, () =>
    context.client.hasCollection({ collection_name: name, timeout: context.timeoutMs }),
  );
  return answer.value === true;
}

/**
 * The pointer to the live collections, or undefined when no switch was ever committed (then the live
 * collections are `<prefix>_<kind>`).
 *
 * @throws StoreError when the pointer cannot be read or is not one Loupe wrote.
 */
export async function readActivePointer(context: CatalogCall): Promise<ActivePointer | undefined> {
  const name = catalogCollectionName(context.prefix);
  if (!(await hasCollection(context, name))) return undefined;
  await catalogCall(context, `loadCollection ${name}`, () =>
    context.client.loadCollectionSync({ collection_name: name, timeout: context.timeoutMs }),
  );
  const answer = await catalogCall(context, `query ${name}`, () =>
    context.client.query({
      collection_name: name,
      filter: `key == ${quoteExpressionString(ACTIVE_KEY)}`,
      output_fields: ["key", "value"],
      limit: 1,
      timeout: context.timeoutMs,
    }),
  );
  const value = answer.data[0]?.value;
  if (value === undefined) return undefined;
  try {
    const parsed = JSON.parse(String(value)) as ActivePointer;
    // A pointer written before regions were a kind names no region collection: the model's is named
    // like its others (with the model's suffix when they have it).
    if (parsed.collections !== undefined && typeof parsed.collections.region !== "string") {
      const image = parsed.collections.image;
      const suffixed =
        typeof image === "string" && image !== collectionName({ prefix: context.prefix, kind: "image" });
      parsed.collections.region = collectionName({
        prefix: context.prefix,
        kind: "region",
        ...(suffixed && typeof parsed.modelId === "string" ? { model: parsed.modelId } : {}),
      });
    }
    if (
      typeof parsed.modelId === "string" &&
      RECORD_KINDS.every((kind) => typeof parsed.collections?.[kind] === "string")
    ) {
      return parsed;
    }
  } catch {
    // Reported below.
  }
  throw new StoreError(
    `The pointer to the live collections in ${name} is not one Loupe wrote (${String(value).slice(0, 200)}). Drop ${name} to go back to the ${collectionName({ prefix: context.prefix, kind: "image" })} collections, or run \`loupe models migrate\` again.`,
    { code: "store_schema_mismatch", status: 500, context: { collection: name } },
  );
}

/** Writes the pointer (the commit point of a pack switch): one upsert of one row, flushed. */
export async function writeActivePointer(context: CatalogCall, pointer: ActivePointer): Promise<void> {
  const { client, timeoutMs } = context;
  const name = catalogCollectionName(context.prefix);
  if (!(await hasCollection(context, name))) {
    await catalogCall(context, `createCollection ${name}`, () =>
      client.createCollection({
        collection_name: name,
        description: "Loupe: the pointer to the live collections",
        fields: [
          { name: "key", data_type: DataType.VarChar, max_length: 64, is_primary_key: true, autoID: false },
          { name: "value", data_type: DataType.VarChar, max_length: CATALOG_VALUE_MAX },
          // Milvus needs a vector field in every collection; this one holds nothing.
          { name: "unused", data_type: DataType.FloatVector, dim: 2 },
        ],
        consistency_level: "Strong",
        timeout: timeoutMs,
      }),
    );
    await catalogCall(context, `createIndex ${name}`, () =>
      client.createIndex({
        collection_name: name,
        field_name: "unused",
        index_name: "unused",
        index_type: "FLAT",
        metric_type: "L2",
        timeout: timeoutMs,
      }),
    );
  }
  await catalogCall(context, `loadCollection ${name}`, () =>
    client.loadCollectionSync({ collection_name: name, timeout: timeoutMs }),
  );
  const response = await catalogCall(context, `upsert into ${name}`, () =>
    client.upsert({
      collection_name: name,
      data: [{ key: ACTIVE_KEY, value: JSON.stringify(pointer), unused: [0, 0] }],
      timeout: timeoutMs,
    }),
  );
  if (response.err_index.length > 0) {
    throw new StoreError(`Milvus rejected the pointer written into ${name}; nothing was switched.`, {
      code: "store_rejected",
      status: 500,
      context: { collection: name },
    });
  }
  await catalogCall(context, `flush ${name}`, () =>
    client.flushSync({ collection_names: [name], timeout: timeoutMs }),
  );
}

/**
 * Points `<prefix>_<kind>_live` at the live collection of each kind. Best effort: a server without
 * aliases leaves them be (the pointer alone decides what Loupe opens).
 *
 * @returns whether every alias now points where the pointer says.
 */
export async function syncLiveAliases({
  logger,
  collections,
  ...context
}: CatalogCall & { collections: Readonly<Record<RecordKind, string>>; logger?: Logger }): Promise<boolean> {
  const { client, prefix, timeoutMs } = context;
  try {
    for (const kind of RECORD_KINDS) {
      const alias = liveAliasName({ prefix, kind });
      const target = collections[kind];
      const described = await catalogCall(
        context,
        `describeAlias ${alias}`,
        () => client.describeAlias({ alias, collection_name: target, timeout: timeoutMs }),
        true,
      );
      const current = described.status?.error_code === "Success" ? described.collection : undefined;
      if (current === target) continue;
      if (current === undefined || current === "") {
        await catalogCall(context, `createAlias ${alias}`, () =>
          client.createAlias({ alias, collection_name: target, timeout: timeoutMs }),
        );
      } else {
        await catalogCall(context, `alterAlias ${alias}`, () =>
          client.alterAlias({ alias, collection_name: target, timeout: timeoutMs }),
        );
      }
    }
    return true;
  } catch (error) {
    logger?.warn(
      { err: error },
      "could not point the live aliases at the live collections; Loupe uses its pointer",
    );
    return false;
  }
}
