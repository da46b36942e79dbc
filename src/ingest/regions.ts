/**
 * Objects as records: the detections of an image (or of a video segment's keyframe) become `region`
 * records that name their parent item and box, carry the parent's text and metadata (so the parent's
 * filters and tenant find them), and are embedded in the shared space (the detection head's region
 * embedding). An item's regions are replaced as a whole and deleted with it.
 */
import type { Detection, ObjectDetector } from "../inference/index.ts";
import { sha256Hex } from "../media/blob-store.ts";
import {
  MAX_FILTER_LIST_LENGTH,
  type RegionRecord,
  recordId,
  type StoredRecord,
  type VectorStore,
} from "../store/index.ts";

/** How ingest stores regions: the pack's detector and the score a detection needs (its default when absent). */
export interface IngestRegions {
  detector: Pick<ObjectDetector, "detectTokens" | "detect">;
  threshold?: number;
}

/** The item regions are found in, as the region records need it. */
export interface RegionParent {
  id: string;
  kind: "image" | "video_segment";
  mediaRef: string;
  source: string;
  text?: string;
  metadata?: Record<string, unknown>;
  createdAt?: number;
}

/**
 * The key of an item's marker, `metadata.regions` (`{ count }`): its regions are stored (ingest writes it
 * with the item, the region backfill once it has stored them), so the backfill passes it by.
 */
export const REGIONS_MARKER = "regions";

/** The marker an item gets once its regions are stored. */
export function regionsMarker(count: number): Record<string, unknown> {
  return { [REGIONS_MARKER]: { count } };
}

/** Metadata keys of the parent not copied into its regions (large, or about the whole item). */
const NOT_COPIED = new Set(["ocr", REGIONS_MARKER]);

/** Words of a detection, e.g. `large red circle`: attribute values (size first) then the label. */
export function describeDetection(detection: Pick<Detection, "label" | "attributes">): string {
  const values = Object.entries(detection.attributes)
    .sort(([left], [right]) => (left === "size" ? -1 : right === "size" ? 1 : 0))
    .map(([, attribute]) => attribute.value)
    .filter((value) => value.length > 0);
  return [...values, detection.label].join(" ");
}

/**
 * The region records of a parent's detections, best first. Detections without an embedding are left out
 * (a region is found by its vector). Ids depend on the tenant, the parent's content and id, the model and
 * the region's rank, so ingesting the same item again writes the same ids.
 */
export function regionRecords({
  tenant,
  modelId,
  parent,
  detections,
}: {
  tenant: string;
  modelId: string;
  parent: RegionParent;
  detections: readonly Detection[];
}): RegionRecord[] {
  const metadata = Object.fromEntries(
    Object.entries(parent.metadata ?? {}).filter(([key]) => !NOT_COPIED.has(key)),
  );
  const records: RegionRecord[] = [];
  for (const [index, detection] of detections.entries()) {
    if (detection.embedding === undefined) continue;
    const description = describeDetection(detection);
    const parentText = parent.text ?? "";
    records.push({
      id: recordId({
        kind: "region",
        tenant,
        // The parent's id already stands for its tenant, content and model.
        contentSha256: sha256Hex(Buffer.from(parent.id, "utf8")),
        modelId,
        parentId: parent.id,
        index,
      }),
      modelId,
      mediaRef: parent.mediaRef,
      source: parent.source,
      ...(parent.createdAt === undefined ? {} : { createdAt: parent.createdAt }),
      text: parentText.length > 0 ? `${description}\n${parentText}` : description,
      metadata,
      vector: detection.embedding,
      parentId: parent.id,
      parentKind: parent.kind,
      box: detection.box,
      label: detection.label,
      attributes: Object.fromEntries(
        Object.entries(detection.attributes).map(([name, attribute]) => [name, attribute.value]),
      ),
      score: detection.score,
    });
  }
  return records;
}

/** Deletes the regions of the given parents for the tenant; returns how many rows were deleted. */
export async function deleteRegionsOf({
  store,
  tenant,
  parentIds,
}: {
  store: Pick<VectorStore, "delete">;
  tenant: string;
  parentIds: readonly string[];
}): Promise<number> {
  let deleted = 0;
  for (let start = 0; start < parentIds.length; start += MAX_FILTER_LIST_LENGTH) {
    const group = parentIds.slice(start, start + MAX_FILTER_LIST_LENGTH);
    const result = await store.delete({
      kind: "region",
      tenant,
      filter: [{ field: "parent_id", op: "in", value: [...group] }],
    });
    deleted += result.deleted;
  }
  return deleted;
}

/**
 * Writes the regions of some parents in place of the ones they had: the old regions are deleted first, so a
 * parent never keeps a region its latest detections do not have.
 */
export async function replaceRegions({
  store,
  tenant,
  parentIds,
  records,
}: {
  store: Pick<VectorStore, "delete" | "upsert">;
  tenant: string;
  parentIds: readonly string[];
  records: readonly RegionRecord[];
}): Promise<number> {
  await deleteRegionsOf({ store, tenant, parentIds });
  if (records.length === 0) return 0;
  const { upserted } = await store.upsert({ kind: "region", tenant, records });
  return upserted;
}

/** The parent of a stored image or segment, as {@link regionRecords} needs it; undefined for other kinds. */
export function regionParentOf(record: StoredRecord): RegionParent | undefined {
  if (record.kind !== "image" && record.kind !== "video_segment") return undefined;
  return {
    id: record.id,
    kind: record.kind,
    // A segment's objects are in its keyframe, which is then the region's media.
    mediaRef:
      record.kind === "video_segment" && record.keyframeRef !== "" ? record.keyframeRef : record.mediaRef,
    source: record.source,
    text: record.text,
    metadata: record.metadata,
    createdAt: record.createdAt,
  };
}
