/**
 * OCR and region backfills and pack switches on the shared queue (`shared-jobs.ts`): the runners a worker
 * runs them with. Their items are not known when the job is created: the job starts with one step, the listing
 * ({@link SharedJobRunner.list}), which a worker runs like an item (leased, renewed, retried), adding each
 * record (or video) it finds as an item keyed by what it stands for and queueing it for any worker. A
 * listing cut short is run again from the start: what it added before is known by key and not added twice,
 * and an OCR backfill's records read meanwhile no longer match its filter.
 *
 * - **Backfills** (`ocr`, `regions`, `backfill.ts`): one item per record left to do (`<kind>/<record id>`:
 *   without a reading, without regions); records done already are counted as skipped, not listed. Each
 *   item reads the record's media and writes what it found ({@link Backfill.read}).
 * - **Pack switch** (`migrate`): one item per stored image and triple, and one per video (its segments
 *   are re-sampled together), each copied into the new model's collections ({@link PackMigrationSession}).
 *   Once every item is settled, the job's ending step ({@link SharedJobRunner.finish}) switches, so the
 *   switch happens once, in one worker, after every copy; a failed item fails the job instead, naming
 *   how many. Every worker loads the pack from the directory the API process resolved, so the pack must
 *   be at that path on every worker (a shared models directory); a worker that finds another model there
 *   fails the job rather than copy with it.
 */
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { RECORD_KINDS, type RecordKind } from "../store/index.ts";
import type { Backfill, BackfillItem } from "./backfill.ts";
import type { JobCounts } from "./jobs.ts";
import { OCR_JOB_KIND } from "./ocr-backfill.ts";
import {
  MIGRATE_JOB_KIND,
  type PackMigration,
  type PackMigrationSession,
  type PackMigrationWork,
} from "./pack-migration.ts";
import type { JobHead, JobWorkRow, ListedJobItem } from "./pg-job-store.ts";
import { REGIONS_JOB_KIND } from "./region-backfill.ts";
import type { SharedJobRunner } from "./shared-jobs.ts";

/** Kind of the OCR backfill jobs on the shared queue. */
export const SHARED_OCR_JOB_KIND = OCR_JOB_KIND;
/** Kind of the region backfill jobs on the shared queue. */
export const SHARED_REGIONS_JOB_KIND = REGIONS_JOB_KIND;
/** Kind of the pack switch jobs on the shared queue. */
export const SHARED_MIGRATE_JOB_KIND = MIGRATE_JOB_KIND;

/** What a backfill job's spec holds besides the common fields: the kinds it reads. */
export interface BackfillJobParams<Kind extends string> {
  kinds: Kind[];
}

/** What a pack switch job's spec holds: the pack's directory as the API process resolved it, and its model. */
export interface MigrateJobParams {
  dir: string;
  modelId: string;
  dropOld: boolean;
}

/** The kinds a backfill job's spec names (every kind the backfill reads when it names none it reads). */
export function backfillParamsOf<Kind extends string>(
  head: Pick<JobHead, "spec">,
  backfill: Pick<Backfill<Kind>, "kinds">,
): BackfillJobParams<Kind> {
  const kinds = head.spec.params?.kinds;
  const valid = Array.isArray(kinds)
    ? backfill.kinds.filter((kind) => (kinds as unknown[]).includes(kind))
    : [];
  return { kinds: valid.length > 0 ? valid : [...backfill.kinds] };
}

/** The runner of backfill jobs (OCR, regions): see the module comment. */
export function createBackfillJobRunner<Kind extends string>(
  backfill: Backfill<Kind>,
): SharedJobRunner<BackfillItem<Kind>> {
  return {
    inputOf(row: JobWorkRow) {
      const { kind, id } = row.input;
      const known = backfill.kinds.find((each) => each === kind);
      return known !== undefined && typeof id === "string" ? { kind: known, id } : undefined;
    },
    async run({ head, work, signal, report }) {
      for (const { index, input } of work) {
        if (signal.aborted) return;
        report(index, await backfill.read({ tenant: head.tenant, item: input, signal }));
      }
    },
    async list({ head, signal, append }) {
      const { kinds } = backfillParamsOf(head, backfill);
      const total = await backfill.count({ tenant: head.tenant, kinds });
      for (const kind of kinds) {
        for await (const records of backfill.unread({ tenant: head.tenant, kind, signal })) {
          await append(
            records.map(
              (record): ListedJobItem => ({
                key: `${kind}/${record.id}`,
                describe: { kind },
                input: { kind, id: record.id },
                id: record.id,
              }),
            ),
          );
        }
      }
      return { total };
    },
  };
}

function migrateParamsOf(head: Pick<JobHead, "id" | "spec">): MigrateJobParams {
  const { dir, modelId, dropOld } = head.spec.params ?? {};
  if (typeof dir !== "string" || typeof modelId !== "string") {
    throw new AppError(
      "invalid_request",
      400,
      `Job ${head.id} does not name the pack to switch to; start the switch again.`,
    );
  }
  return { dir, modelId, dropOld: dropOld === true };
}

function isRecordKind(value: unknown): value is RecordKind {
  return (RECORD_KINDS as readonly unknown[]).includes(value);
}

function workOf(input: Record<string, unknown>): PackMigrationWork | undefined {
  const { kind, tenant, id, videoId, ids } = input;
  if (typeof tenant !== "string" || !isRecordKind(kind)) return undefined;
  if (kind === "image" || kind === "triple") return typeof id === "string" ? { kind, tenant, id } : undefined;
  if (kind !== "video_segment" || typeof videoId !== "string" || !Array.isArray(ids)) return undefined;
  if (!ids.every((each) => typeof each === "string")) return undefined;
  return { kind, tenant, videoId, ids: ids as string[] };
}

/** An item of a switch job, as listed: a record (image, triple) or a video (`kind: video`). */
function listedWork(work: PackMigrationWork): ListedJobItem {
  if (work.kind === "video_segment") {
    return {
      key: `video/${work.tenant}/${work.videoId}`,
      describe: { kind: "video", tenant: work.tenant, from: work.videoId },
      input: { ...work },
    };
  }
  return {
    key: `${work.kind}/${work.tenant}/${work.id}`,
    describe: { kind: work.kind, tenant: work.tenant, from: work.id },
    input: { ...work },
  };
}

/**
 * The runner of pack switch jobs: see the module comment. It keeps the pack of the switch it last ran
 * open (loading a pack takes seconds), and closes it when another switch comes, after the switch, and at
 * {@link SharedJobRunner.close}.
 */
export function createMigrateJobRunner({
  migration,
  logger,
}: {
  migration: PackMigration;
  logger?: Logger;
}): SharedJobRunner<PackMigrationWork> {
  let open: { key: string; session: Promise<PackMigrationSession> } | undefined;
  const close = async () => {
    const current = open;
    open = undefined;
    if (current === undefined) return;
    await (await current.session.catch(() => undefined))?.close().catch((error: unknown) => {
      logger?.warn({ err: error }, "closing the pack of a switch failed");
    });
  };
  const sessionOf = async (head: JobHead): Promise<PackMigrationSession> => {
    const { dir, modelId } = migrateParamsOf(head);
    const key = `${dir}\n${modelId}`;
    if (open?.key !== key) {
      await close();
      const session = migration.open(dir, { modelId });
      open = { key, session };
      // A failed open is not kept: the next item tries again.
      session.catch(() => {
        if (open?.session === session) open = undefined;
      });
    }
    return open.session;
  };
  return {
    inputOf: (row) => workOf(row.input),
    async run({ head, work, signal, report }) {
      const session = await sessionOf(head);
      for (const { index, input } of work) {
        if (signal.aborted) return;
        report(index, await session.copy(input, signal));
      }
    },
    async list({ head, signal, append }) {
      const session = await sessionOf(head);
      for await (const page of session.work(signal)) await append(page.map(listedWork));
      return {};
    },
    async finish({ head, counts }: { head: JobHead; counts: JobCounts }) {
      if (counts.failed > 0) {
        throw new AppError(
          "migration_incomplete",
          409,
          `${counts.failed} items could not be re-embedded (see the failed items); nothing was switched. Delete or re-ingest them, then resume the job.`,
          { context: { failed: counts.failed } },
        );
      }
      const { dropOld } = migrateParamsOf(head);
      const session = await sessionOf(head);
      try {
        const result = await session.switch({ dropOld });
        logger?.info({ jobId: head.id, ...result }, "pack switch job ended");
      } finally {
        await close();
      }
    },
    close,
  };
}
