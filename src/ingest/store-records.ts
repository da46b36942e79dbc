/**
 * The last step every pipeline shares: upsert a chunk of records whose blobs are already written and
 * referenced, so that bad items fail alone and nothing is left behind. When the store refuses the chunk
 * for its data (Milvus rejects a value, or the store's own row checks do), each record is tried alone,
 * so the one it cannot take fails and the others are stored. Whatever is not stored has its blob
 * references released, which removes blobs nothing else uses: no blob outlives a failed ingest.
 */
import { AppError, StoreError, ValidationError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { RecordKind, UpsertRequest, VectorStore } from "../store/index.ts";

/** A blob reference an ingest added for one record: released again if the record is not stored. */
export interface AddedReference {
  /** The record the reference is for. */
  recordId: string;
  /** The blob, as the record refers to it (`blob:<sha256>`) or as its key. */
  ref: string;
  /** The owner label the reference was added under (`<tenant>/<recordId>`). */
  owner: string;
}

/** How references are dropped: the blob store's `release`, or the media port's. */
export type ReleaseReference = (reference: AddedReference) => Promise<unknown>;

/** What {@link storeRecords} did. */
export interface StoreRecordsOutcome {
  /** Ids of the records now stored. */
  stored: string[];
  /** Records the store refused on their own, with the item error to report. */
  rejected: Map<string, AppError>;
  /**
   * Set when the store failed as a whole (unreachable, timed out, or refusing every record): records
   * neither stored nor rejected were not written. Rethrow it after reporting the rest.
   */
  failure?: unknown;
}

/** A refusal that concerns the data sent, not the store's health. */
function isDataRejection(error: unknown): error is AppError {
  return error instanceof ValidationError || (error instanceof StoreError && error.code === "store_rejected");
}

/** The item error of a record the store refused on its own. */
function rejectionOf(error: AppError): AppError {
  if (error instanceof ValidationError) return error;
  return new AppError(
    "item_rejected",
    422,
    `The vector store refused this item: ${error.message.replace(/\.$/, "")}. Check its text and metadata.`,
    { cause: error, context: error.context },
  );
}

/**
 * Upserts `records` of one kind for the tenant, trying them one by one when the store refuses the whole
 * upsert for its data, then releases the references of every record that was not stored. Never throws
 * for the store: a failure of the store as a whole comes back as `failure`.
 */
export async function storeRecords<K extends RecordKind>({
  store,
  kind,
  tenant,
  records,
  added,
  release,
  logger,
}: {
  store: Pick<VectorStore, "upsert">;
  kind: K;
  tenant: string;
  records: UpsertRequest<K>["records"];
  /** References added for these records (and for records that never got this far). */
  added: readonly AddedReference[];
  release: ReleaseReference;
  logger?: Logger;
}): Promise<StoreRecordsOutcome> {
  const outcome: StoreRecordsOutcome = { stored: [], rejected: new Map() };
  if (records.length > 0) {
    try {
      await store.upsert({ kind, tenant, records });
      outcome.stored = records.map((record) => record.id);
    } catch (error) {
      const [only] = records;
      if (!isDataRejection(error)) outcome.failure = error;
      else if (records.length === 1 && only !== undefined) outcome.rejected.set(only.id, rejectionOf(error));
      else {
        logger?.warn(
          { err: error, kind, records: records.length },
          "upsert refused; storing records one by one",
        );
        await storeOneByOne({ store, kind, tenant, records, outcome });
      }
    }
  }
  const stored = new Set(outcome.stored);
  await releaseReferences({
    references: added.filter((reference) => !stored.has(reference.recordId)),
    release,
    logger,
  });
  return outcome;
}

async function storeOneByOne<K extends RecordKind>({
  store,
  kind,
  tenant,
  records,
  outcome,
}: {
  store: Pick<VectorStore, "upsert">;
  kind: K;
  tenant: string;
  records: UpsertRequest<K>["records"];
  outcome: StoreRecordsOutcome;
}): Promise<void> {
  const refusals: AppError[] = [];
  for (const record of records) {
    try {
      await store.upsert({ kind, tenant, records: [record] });
      outcome.stored.push(record.id);
    } catch (error) {
      if (!isDataRejection(error)) {
        outcome.failure = error;
        return;
      }
      refusals.push(error);
      outcome.rejected.set(record.id, rejectionOf(error));
    }
  }
  // Refusing every record alike says more about the store (a collection it cannot write) than the data.
  if (
    outcome.stored.length === 0 &&
    refusals.length > 1 &&
    !refusals.some((e) => e instanceof ValidationError)
  ) {
    outcome.rejected.clear();
    outcome.failure = refusals[0];
  }
}

/**
 * Releases references an ingest added for records it did not store. A release that fails is logged
 * and left: it cannot make the ingest's answer better, and the blob stays referenced (never lost).
 */
export async function releaseReferences({
  references,
  release,
  logger,
}: {
  references: readonly AddedReference[];
  release: ReleaseReference;
  logger?: Logger;
}): Promise<void> {
  for (const reference of references) {
    try {
      await release(reference);
    } catch (error) {
      logger?.error({ err: error, reference }, "releasing the blob of a record that was not stored failed");
    }
  }
}
