/**
 * Deterministic record ids. The same content, indexed for the same tenant with the same model, always
 * gets the same id, so a retried or repeated ingest upserts one row instead of adding a duplicate.
 */
import { createHash } from "node:crypto";
import { ValidationError } from "../errors.ts";

/** The kinds of records Loupe stores, one collection each. */
export type RecordKind = "image" | "video_segment" | "triple" | "region";

/** Every record kind, in a fixed order. */
export const RECORD_KINDS: readonly RecordKind[] = ["image", "video_segment", "triple", "region"];

/**
 * The kinds that are items of their own, listed and searched when no kind is named; a region is a part of
 * an image or a video segment (an object found in it) and is read when asked for.
 */
export const ITEM_KINDS: readonly RecordKind[] = ["image", "video_segment", "triple"];

const KIND_PREFIX: Record<RecordKind, string> = {
  image: "img",
  video_segment: "seg",
  triple: "tri",
  region: "reg",
};

/** What a record id is made of. */
export type RecordIdInput =
  | { kind: "image"; tenant: string; contentSha256: string; modelId: string }
  | {
      kind: "video_segment";
      tenant: string;
      /** sha256 of the whole video file. */
      contentSha256: string;
      modelId: string;
      startS: number;
      endS: number;
    }
  | {
      kind: "triple";
      tenant: string;
      /** sha256 of the image the question is about. */
      contentSha256: string;
      modelId: string;
      /** One image can carry many question-answer pairs; the question tells them apart. */
      question: string;
    }
  | {
      kind: "region";
      tenant: string;
      /** sha256 of the media the region was found in (the image, or the video of a keyframe). */
      contentSha256: string;
      modelId: string;
      /** The item the region is part of (an image or a video segment id). */
      parentId: string;
      /** The region's place among its parent's detections (best first). */
      index: number;
    };

/**
 * Ids Loupe accepts: short, printable and free of quotes, so they are safe in logs and URLs. They are
 * still escaped wherever they enter a Milvus expression.
 */
export const RECORD_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const HASH_SCHEME = "loupe-record-id-v1";
const ID_HEX_LENGTH = 32;

/** True when `id` has the shape of a record id Loupe stores. */
export function isValidRecordId(id: unknown): id is string {
  return typeof id === "string" && RECORD_ID_PATTERN.test(id);
}

/**
 * Computes the deterministic id of a record: `<kind prefix>_<32 hex chars>` (e.g. `img_3f…`), the
 * start of a sha256 over the tenant, the content hash, the model id and, for video segments, the time
 * span rounded to the millisecond (so 1.0 and 1.0000001 name the same segment).
 */
export function recordId(input: RecordIdInput): string {
  if (!SHA256_HEX.test(input.contentSha256)) {
    throw new ValidationError(
      `contentSha256 must be 64 hex characters; got ${JSON.stringify(input.contentSha256.slice(0, 80))}.`,
      { context: { contentSha256: input.contentSha256.slice(0, 80) } },
    );
  }
  if (input.tenant.length === 0 || input.modelId.length === 0) {
    throw new ValidationError("tenant and modelId must be non-empty to compute a record id.", {
      context: { tenant: input.tenant, modelId: input.modelId },
    });
  }
  const parts: string[] = [
    HASH_SCHEME,
    input.kind,
    input.tenant,
    input.contentSha256.toLowerCase(),
    input.modelId,
  ];
  if (input.kind === "video_segment") {
    parts.push(formatSpan(input.startS, input.endS));
  } else if (input.kind === "triple") {
    parts.push(input.question);
  } else if (input.kind === "region") {
    if (!Number.isInteger(input.index) || input.index < 0) {
      throw new ValidationError(`A region's index must be a whole number ≥ 0; got ${input.index}.`, {
        context: { index: input.index },
      });
    }
    parts.push(input.parentId, String(input.index));
  }
  // JSON encoding keeps the parts apart: no choice of tenant or model id can imitate another split.
  const digest = createHash("sha256").update(JSON.stringify(parts), "utf8").digest("hex");
  return `${KIND_PREFIX[input.kind]}_${digest.slice(0, ID_HEX_LENGTH)}`;
}

function formatSpan(startS: number, endS: number): string {
  if (!Number.isFinite(startS) || !Number.isFinite(endS) || startS < 0 || endS < startS) {
    throw new ValidationError(
      `A video segment needs 0 <= startS <= endS, both finite; got startS=${startS}, endS=${endS}.`,
      { context: { startS, endS } },
    );
  }
  return `${startS.toFixed(3)}-${endS.toFixed(3)}`;
}
