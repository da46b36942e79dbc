/**
 * POST /v1/videos — ingests videos as time segments. Bodies:
 * - multipart: one or more `file` (or `files`) fields (MP4/MOV, WebM/Matroska, AVI) and an optional `metadata`
 *   field holding a JSON object applied to every video;
 * - JSON `{ urls: [...], metadata? }`: each URL is fetched with the server's URL limits and allow-list.
 *
 * Each video is probed first; when they last longer than `LOUPE_VIDEO_SYNC_MAX_SECONDS` together, or
 * with `?async=true`, the ingest runs as a job and the answer is 202 `{ job: { id, status } }` (on the
 * shared queue, run by any worker, when shared jobs are configured; else in this process);
 * otherwise the answer is 200 with one item per video, in order: its id (`vid_…`), `stored` or
 * `skipped` (already stored), its segments, or `failed` with the reason. One bad video never fails the
 * others; a request whose every video failed is answered with the first failure's status.
 */
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { AuditLog } from "../../audit/audit-log.ts";
import type { Config } from "../../config.ts";
import { AppError, invalidInput, MediaError, ValidationError } from "../../errors.ts";
import { type JobItemOutcome, type JobRegistry, toJobError } from "../../ingest/jobs.ts";
import type { SharedJobs } from "../../ingest/shared-jobs.ts";
import { assertStorableText, toStorableText } from "../../ingest/storable-text.ts";
import {
  type IngestedVideo,
  VIDEO_CONTENT_TYPES,
  type VideoIngester,
  videoContentType,
  videoJobOutcome,
} from "../../ingest/video-ingest.ts";
import { fetchUrl } from "../../media/url-fetcher.ts";
import { auditActor, jobAudit, recordWrite } from "../batch-outcome.ts";
import type { AppContext } from "../context.ts";
import {
  asList,
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
  payloadTooLargeResponse,
  repeatable,
  uploadSchema,
} from "../openapi.ts";
import { asyncQuerySchema, jobAcceptedSchema, jobErrorSchema, wantsJob } from "./jobs.ts";

/** The route as the audit trail names it. */
const ROUTE = "POST /v1/videos";

/** Keys of caller metadata: identifiers, so each is filterable as `metadata.<key>`. */
const METADATA_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** Caller metadata of a video. `video` is reserved for what Loupe records about the file. */
export const videoMetadataSchema = z
  .looseObject({
    tags: z.array(z.string().min(1).max(128)).max(64).optional(),
    title: z.string().max(512).optional(),
    source: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
      .optional()
      .describe("how the video arrived; default `upload` or `url`"),
  })
  .refine((metadata) => Object.keys(metadata).every((key) => METADATA_KEY.test(key) && key !== "video"), {
    message:
      'metadata keys must be letters, digits and _ (not starting with a digit, at most 64 characters); "video" is reserved',
  })
  .describe("tags (strings), title, source, and any other JSON; stored on every segment");

/** JSON body of POST /v1/videos. */
export const videosJsonRequestSchema = z
  .object({
    urls: z.array(z.string().min(1).max(2048)).min(1).describe("http(s) URLs of videos"),
    metadata: videoMetadataSchema.optional(),
  })
  .strict()
  .meta({ id: "VideosRequest" });

const videoUpload = repeatable(
  uploadSchema("A video file (MP4/MOV, WebM/Matroska, AVI); repeat the field for more."),
  "upload each video as a file",
).optional();

/** Multipart body of POST /v1/videos. */
export const videosFormSchema = z.strictObject(
  {
    file: videoUpload,
    files: videoUpload.describe("Accepted as well as `file`, as the image API names it."),
    metadata: z
      .string({ error: "metadata must be one text field holding a JSON object" })
      .optional()
      .describe("Caller metadata as a JSON object, applied to every video (see VideosRequest.metadata)."),
  },
  {
    error: (issue) =>
      issue.code === "unrecognized_keys"
        ? `Unknown multipart field ${JSON.stringify(issue.keys[0]?.slice(0, 80))}; send videos as \`file\` (or \`files\`) fields and an optional \`metadata\` JSON field`
        : undefined,
  },
);

/** A stored segment in a response. */
export const videoSegmentResultSchema = z.object({
  id: z.string().describe("segment id (seg_…)"),
  startS: z.number(),
  endS: z.number(),
  keyframeRef: z.string(),
});

/** One video's outcome. */
export const videoItemResultSchema = z.object({
  index: z.number().int(),
  filename: z.string().optional(),
  url: z.string().optional(),
  status: z.enum(["stored", "skipped", "failed"]),
  id: z.string().optional().describe("video id (vid_…)"),
  durationSeconds: z.number().optional().describe("seconds the segments cover"),
  truncated: z
    .boolean()
    .optional()
    .describe("true when the video decoded to much less than it declared: only the decoded part is stored"),
  declaredDurationSeconds: z.number().optional().describe("of a truncated video: the duration it declared"),
  segments: z.array(videoSegmentResultSchema).optional(),
  error: jobErrorSchema.optional(),
});

/** Body of a 200 from POST /v1/videos. */
export const videosResponseSchema = z
  .object({
    items: z.array(videoItemResultSchema),
    counts: z.object({ stored: z.number().int(), skipped: z.number().int(), failed: z.number().int() }),
  })
  .meta({ id: "VideosResponse" });

type VideoItemResult = z.infer<typeof videoItemResultSchema>;

/** A video of the request, read (and for URLs fetched) before any processing. */
interface VideoInput {
  describe: { filename: string } | { url: string };
  source: string;
  bytes?: Uint8Array;
  durationSeconds?: number;
  /** MIME type of the bytes, from the probe. */
  contentType?: string;
  error?: AppError;
}

/** Settings the route reads. */
export type VideosRouteConfig = Pick<
  Config,
  | "videoMaxBytes"
  | "videoSyncMaxSeconds"
  | "maxItemsPerRequest"
  | "maxMetadataBytes"
  | "urlAllowHosts"
  | "urlTimeoutMs"
  | "urlMaxRedirects"
>;

function parseMetadata(raw: unknown, maxBytes: number): z.infer<typeof videoMetadataSchema> {
  let value = raw;
  if (typeof raw === "string") {
    if (Buffer.byteLength(raw) > maxBytes) throw metadataTooLarge(Buffer.byteLength(raw), maxBytes);
    try {
      value = JSON.parse(raw);
    } catch {
      throw new ValidationError("The `metadata` field is not valid JSON; send a JSON object.");
    }
  }
  const size = Buffer.byteLength(JSON.stringify(value ?? {}));
  if (size > maxBytes) throw metadataTooLarge(size, maxBytes);
  // Shared by every video of the request, so text the store cannot keep refuses the request, naming the field.
  assertStorableText(value ?? {}, "metadata");
  const parsed = videoMetadataSchema.safeParse(value ?? {}, { reportInput: true });
  if (!parsed.success) throw invalidInput(parsed.error, { subject: "metadata", root: "metadata" });
  return parsed.data;
}

function metadataTooLarge(size: number, limit: number): ValidationError {
  return new ValidationError(
    `The metadata is ${size} bytes of JSON; the limit is ${limit}. Shorten it or raise LOUPE_MAX_METADATA_BYTES.`,
    { context: { size, limit } },
  );
}

function asAppError(error: unknown): AppError {
  return error instanceof AppError
    ? error
    : new AppError("internal_error", 500, "The video failed unexpectedly; the server log has the details.");
}

/** The videos of a multipart request, read before any processing. */
async function fromForm(
  form: z.output<typeof videosFormSchema>,
  config: VideosRouteConfig,
): Promise<{ inputs: VideoInput[]; metadata: z.infer<typeof videoMetadataSchema> }> {
  // `file` as the video API names it, `files` as the image API does; both are accepted, in that order.
  const files = [...asList(form.file), ...asList(form.files)];
  if (files.length === 0)
    throw new ValidationError("The request holds no `file` field; attach one or more videos.");
  const metadata = parseMetadata(form.metadata, config.maxMetadataBytes);
  const inputs: VideoInput[] = [];
  for (const [index, file] of files.entries()) {
    const filename = toStorableText(file.name).slice(0, 255) || `video-${index}`;
    const type = file.type.split(";")[0]?.trim().toLowerCase() ?? "";
    const allowed: readonly string[] = VIDEO_CONTENT_TYPES;
    if (type !== "" && type !== "application/octet-stream" && !allowed.includes(type)) {
      inputs.push({
        describe: { filename },
        source: "upload",
        error: new MediaError(
          `File ${JSON.stringify(filename)} has content type ${JSON.stringify(type)}; allowed: ${VIDEO_CONTENT_TYPES.join(", ")}.`,
          { code: "video_unsupported", status: 415, context: { contentType: type } },
        ),
      });
      continue;
    }
    inputs.push({
      describe: { filename },
      source: metadata.source ?? "upload",
      bytes: new Uint8Array(await file.arrayBuffer()),
    });
  }
  return { inputs, metadata };
}

/** The videos of a JSON request, each URL fetched with the server's URL limits. */
async function fromJson(
  c: AppContext,
  body: z.output<typeof videosJsonRequestSchema>,
  config: VideosRouteConfig,
): Promise<{ inputs: VideoInput[]; metadata: z.infer<typeof videoMetadataSchema> }> {
  const metadata = parseMetadata(body.metadata ?? {}, config.maxMetadataBytes);
  const inputs: VideoInput[] = [];
  for (const url of body.urls) {
    try {
      const fetched = await fetchUrl({
        url,
        maxBytes: config.videoMaxBytes,
        timeoutMs: config.urlTimeoutMs,
        allowedContentTypes: VIDEO_CONTENT_TYPES,
        allowHosts: config.urlAllowHosts,
        maxRedirects: config.urlMaxRedirects,
        signal: c.req.raw.signal,
      });
      inputs.push({
        describe: { url: toStorableText(url) },
        source: metadata.source ?? "url",
        bytes: fetched.bytes,
      });
    } catch (error) {
      inputs.push({ describe: { url: toStorableText(url) }, source: "url", error: asAppError(error) });
    }
  }
  return { inputs, metadata };
}

function resultOf(index: number, input: VideoInput, video: IngestedVideo): VideoItemResult {
  return {
    index,
    ...input.describe,
    status: video.status,
    id: video.id,
    durationSeconds: Math.round(video.durationSeconds * 1000) / 1000,
    ...(video.truncated === undefined
      ? {}
      : { truncated: true, declaredDurationSeconds: video.truncated.declaredDurationSeconds }),
    segments: video.segments,
  };
}

function failureOf(index: number, input: VideoInput, error: AppError): VideoItemResult {
  return { index, ...input.describe, status: "failed", error: toJobError(error) };
}

/** The /v1/videos route. */
export function createVideosRoute({
  videos,
  jobs,
  sharedJobs,
  config,
  audit,
}: {
  videos: VideoIngester;
  jobs: JobRegistry;
  /** Where jobs go when they run on the shared queue (workers of any replica); `jobs` when absent. */
  sharedJobs?: SharedJobs;
  config: VideosRouteConfig;
  /** The audit trail: stored videos are recorded as `ingest` lines. */
  audit?: AuditLog;
}) {
  const maxBody = config.videoMaxBytes + 1024 * 1024;
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/videos",
      operationId: "ingestVideos",
      tags: ["ingest"],
      summary: "Ingest videos as time segments",
      description:
        "Multipart uploads (`file` or `files`, repeatable) or JSON `urls`. Each video is probed, cut into segments at scene changes, and each segment's keyframes embedded; the video's id is deterministic, so the same video twice is stored once. Videos longer than LOUPE_VIDEO_SYNC_MAX_SECONDS together, or `async=true`, run as a job. When every video fails, the first failure is the error.",
      middleware: [
        bodyLimit({
          maxSize: maxBody,
          onError: () => {
            throw new MediaError(
              `The request body is over ${maxBody} bytes; send fewer or smaller videos, or raise LOUPE_VIDEO_MAX_BYTES.`,
              { status: 413, code: "payload_too_large", context: { limit: maxBody } },
            );
          },
        }),
      ],
      request: {
        query: asyncQuerySchema,
        body: {
          description: "Files to upload, or URLs to fetch.",
          content: {
            "application/json": { schema: videosJsonRequestSchema },
            "multipart/form-data": { schema: videosFormSchema },
          },
        },
      },
      responses: {
        200: jsonResponse("One item per video, in order.", videosResponseSchema),
        202: jsonResponse("Started as a job.", jobAcceptedSchema),
        400: invalidRequestResponse,
        413: payloadTooLargeResponse("LOUPE_VIDEO_MAX_BYTES plus 1 MiB"),
        415: errorResponse("Every video is of a type that is not accepted (code video_unsupported)."),
        422: errorResponse("Every video failed; the first failure's code and message."),
        503: notReadyResponse,
      },
    },
    { access: { scope: "ingest", cost: 5 } },
  );
  return createRouter().openapi(route, async (c) => {
    const tenant = c.get("tenant");
    // The declaration types each body target as either content type; the content type tells which.
    const { inputs, metadata } = (c.req.header("content-type") ?? "")
      .toLowerCase()
      .startsWith("multipart/form-data")
      ? await fromForm(c.req.valid("form") as z.output<typeof videosFormSchema>, config)
      : await fromJson(c, c.req.valid("json") as z.output<typeof videosJsonRequestSchema>, config);
    if (inputs.length > config.maxItemsPerRequest) {
      throw new ValidationError(
        `A request takes at most ${config.maxItemsPerRequest} videos; got ${inputs.length}. Split it or raise LOUPE_MAX_ITEMS_PER_REQUEST.`,
      );
    }
    const { source: _source, ...stored } = metadata;
    const text = [metadata.title, ...(metadata.tags ?? [])].filter((part) => part !== undefined).join(" ");
    // Probing is quick and decides how the request is answered; a video it refuses fails here.
    let totalSeconds = 0;
    for (const input of inputs) {
      if (input.bytes === undefined) continue;
      try {
        const probe = await videos.inspect({ bytes: input.bytes });
        input.durationSeconds = probe.durationSeconds;
        input.contentType = videoContentType(probe);
        totalSeconds += input.durationSeconds;
      } catch (error) {
        input.error = asAppError(error);
        input.bytes = undefined;
      }
    }
    const ingestOne = (input: VideoInput, signal?: AbortSignal) =>
      videos.ingest({
        tenant,
        bytes: input.bytes as Uint8Array,
        ...("filename" in input.describe
          ? { filename: input.describe.filename }
          : { filename: input.describe.url }),
        source: input.source,
        metadata: stored,
        text,
        signal,
      });

    const runAsJob = wantsJob(c.req.valid("query")) || totalSeconds > config.videoSyncMaxSeconds;
    if (runAsJob && sharedJobs?.runsVideos === true) {
      // Recorded in PostgreSQL, the bytes in the blob store, queued on Redis; workers audit as this caller.
      const job = await sharedJobs.createVideos({
        tenant,
        items: inputs.map((input) => ({
          describe: input.describe,
          source: input.source,
          ...(input.bytes === undefined ? {} : { bytes: input.bytes }),
          ...(input.contentType === undefined ? {} : { contentType: input.contentType }),
          ...(input.error === undefined ? {} : { rejected: input.error }),
        })),
        metadata: stored,
        text,
        ...(audit === undefined ? {} : { actor: auditActor(c, ROUTE) }),
      });
      c.header("location", `/v1/jobs/${job.id}`);
      return c.json({ job: { id: job.id, status: job.status } }, 202);
    }
    if (runAsJob) {
      const job = jobs.create<VideoInput>({
        tenant,
        kind: "videos",
        items: inputs.map((input) => ({ describe: input.describe, input })),
        run: async ({ items, signal, report }) => {
          for (const { index, input } of items) {
            if (signal.aborted) return;
            if (input.error !== undefined || input.bytes === undefined) {
              const error =
                input.error ??
                new ValidationError("The video's bytes are no longer available; send it again.");
              report(index, { status: "failed", error: toJobError(error) });
              continue;
            }
            let outcome: JobItemOutcome;
            try {
              outcome = videoJobOutcome(await ingestOne(input, signal));
            } catch (error) {
              outcome = { status: "failed", error: toJobError(asAppError(error)) };
            }
            report(index, outcome);
          }
        },
        audit: jobAudit(c, ROUTE, audit),
      });
      c.header("location", `/v1/jobs/${job.id}`);
      return c.json({ job: { id: job.id, status: job.status } }, 202);
    }

    const results: VideoItemResult[] = [];
    const errors: AppError[] = [];
    for (const [index, input] of inputs.entries()) {
      if (input.error !== undefined || input.bytes === undefined) {
        const error = input.error ?? new ValidationError("The video could not be read.");
        errors.push(error);
        results.push(failureOf(index, input, error));
        continue;
      }
      try {
        results.push(resultOf(index, input, await ingestOne(input, c.req.raw.signal)));
      } catch (error) {
        const appError = asAppError(error);
        if (appError.status >= 500) c.get("logger").error({ err: error, index }, "video ingest failed");
        errors.push(appError);
        results.push(failureOf(index, input, appError));
      }
    }
    const counts = { stored: 0, skipped: 0, failed: 0 };
    for (const result of results) counts[result.status] += 1;
    await recordWrite({
      c,
      log: audit,
      action: "ingest",
      route: ROUTE,
      itemIds: results.flatMap((result) =>
        result.status === "stored" && result.id !== undefined ? [result.id] : [],
      ),
      detail: {
        kind: "videos",
        counts,
        segments: results.reduce(
          (sum, result) => sum + (result.status === "stored" ? (result.segments?.length ?? 0) : 0),
          0,
        ),
      },
    });
    const first = errors[0];
    if (counts.failed === results.length && first !== undefined) {
      const prefix = results.length === 1 ? "" : `All ${results.length} videos failed; the first: `;
      throw new AppError(first.code, first.status, `${prefix}${first.message}`, {
        context: { failed: results.length },
      });
    }
    return c.json({ items: results, counts }, 200);
  });
}
