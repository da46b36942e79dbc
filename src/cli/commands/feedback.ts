/**
 * `loupe feedback proposals|approve|reject`: the triples that feedback on answers proposed, on the data
 * dir `LOUPE_DATA_DIR` configures (`feedback/`, `blobs/`), for one tenant (`--tenant`, default
 * `LOUPE_DEFAULT_TENANT`). An operator's tool, like `loupe keys`:
 *
 * - `loupe feedback proposals [--tenant t] [--status pending|approved|rejected|all] [--json]` and
 *   `loupe feedback reject <id>` open only the feedback files and the blob store, so they work while a
 *   `loupe serve` runs on the same data dir;
 * - `loupe feedback approve <id>` ingests the triple, so it opens the services in-process (the embedded
 *   Milvus Lite and the model pack), which a running server holds: while one runs, approve over HTTP
 *   (`POST /v1/feedback/proposals/{id}/approve` with a key that has the `ingest` scope).
 *
 * Approvals and rejections are written to `<LOUPE_DATA_DIR>/audit.log`. With `LOUPE_DATABASE_URL` the
 * proposals and the audit trail are the database's, as the server keeps them (the blobs stay in the
 * data dir, or in LOUPE_S3_BUCKET when it is set).
 */
import type { Command } from "commander";
import type { AuditLog } from "../../audit/audit-log.ts";
import { openAuditLog } from "../../audit/open-audit-log.ts";
import { type Config, parseConfig } from "../../config.ts";
import { NotReadyError, ValidationError } from "../../errors.ts";
import { FeedbackService } from "../../feedback/feedback-service.ts";
import type { Proposal, ProposalStatus } from "../../feedback/feedback-store.ts";
import { openFeedbackStore } from "../../feedback/open-feedback-store.ts";
import { openBlobStore } from "../../media/open-blob-store.ts";
import type { VectorStore } from "../../store/index.ts";
import { formatTable } from "../table.ts";

/** Where a command's output goes (tests collect it). */
type Write = (text: string) => void;

/** What listing and rejecting never reach: asking them is a bug, answered plainly. */
const noStore = new Proxy({} as VectorStore, {
  get(_target, property) {
    if (property === "then") return undefined;
    return async () => {
      throw new NotReadyError("This command does not open the vector store.");
    };
  },
});

/** A feedback service over the data dir's feedback files and blobs only (no store, no pack). */
async function withFeedbackFiles<Result>(
  env: Record<string, string | undefined>,
  work: (parts: { feedback: FeedbackService; audit: AuditLog; config: Config }) => Promise<Result>,
): Promise<Result> {
  const config = parseConfig({ env });
  // On the database of LOUPE_DATABASE_URL when it is set, as the server keeps them.
  const feedbackStore = await openFeedbackStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  const audit = await openAuditLog({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }).catch(
    async (error: unknown) => {
      await feedbackStore.close();
      throw error;
    },
  );
  // Where the server keeps them: LOUPE_S3_BUCKET when set, else the data dir.
  const { blobs, close: closeBlobs } = await openBlobStore({ settings: config });
  const feedback = new FeedbackService({
    feedback: feedbackStore,
    blobs,
    store: noStore,
    triples: {
      ingest: async () => {
        throw new NotReadyError("This command does not open the triple ingester.");
      },
    },
    maxPending: config.feedbackMaxPending,
    maxImagePixels: config.maxImagePixels,
  });
  try {
    return await work({ feedback, audit, config });
  } finally {
    await feedbackStore.close();
    await audit.close();
    await closeBlobs();
  }
}

const STATUSES = ["pending", "approved", "rejected", "all"] as const;

/** `loupe feedback proposals`: every page of the tenant's proposals. */
export async function listProposalsCommand({
  options,
  env = process.env,
  write = (text) => process.stdout.write(text),
}: {
  options: { tenant?: string; status?: string; json?: boolean };
  env?: Record<string, string | undefined>;
  write?: Write;
}): Promise<Proposal[]> {
  const status = (options.status ?? "pending") as ProposalStatus | "all";
  if (!STATUSES.includes(status)) {
    throw new ValidationError(`--status must be one of ${STATUSES.join(", ")}; got ${options.status}.`);
  }
  const proposals = await withFeedbackFiles(env, async ({ feedback, config }) => {
    const tenant = options.tenant ?? config.defaultTenant;
    const all: Proposal[] = [];
    let cursor: string | undefined;
    do {
      const page = await feedback.listProposals({
        tenant,
        status,
        limit: 100,
        ...(cursor ? { cursor } : {}),
      });
      all.push(...page.proposals);
      cursor = page.nextCursor;
    } while (cursor !== undefined);
    return all;
  });
  if (options.json === true) {
    write(`${JSON.stringify(proposals, null, 2)}\n`);
    return proposals;
  }
  if (proposals.length === 0) {
    write(`No ${status === "all" ? "" : `${status} `}proposals.\n`);
    return proposals;
  }
  // Caller text is shown cut short and on one line, so a proposal cannot lay out the terminal.
  const cell = (text: string, max: number) => {
    const flat = text.replace(/[\p{Cc}\p{Zl}\p{Zp}]+/gu, " ");
    return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
  };
  const rows = [["ID", "STATUS", "CREATED", "QUESTION", "ANSWER", "FROM", "TRIPLE"]];
  for (const proposal of proposals) {
    rows.push([
      proposal.id,
      proposal.status,
      proposal.createdAt.slice(0, 16).replace("T", " "),
      cell(proposal.question, 40),
      cell(`${proposal.corrected ? "(corrected) " : ""}${proposal.answer}`, 40),
      proposal.proposedBy ?? "-",
      proposal.tripleId ?? "-",
    ]);
  }
  write(`${formatTable(rows)}\n`);
  return proposals;
}

/** `loupe feedback reject <id>`. */
export async function rejectProposalCommand({
  id,
  options,
  env = process.env,
  write = (text) => process.stdout.write(text),
}: {
  id: string;
  options: { tenant?: string; json?: boolean };
  env?: Record<string, string | undefined>;
  write?: Write;
}): Promise<Proposal> {
  const { proposal, changed } = await withFeedbackFiles(env, async ({ feedback, audit, config }) => {
    const tenant = options.tenant ?? config.defaultTenant;
    const outcome = await feedback.reject({ tenant, id, keyId: null });
    if (outcome.changed) {
      await audit.record({
        action: "proposal.reject",
        keyId: null,
        tenant,
        route: "cli feedback reject",
        requestId: null,
        itemIds: [id],
      });
    }
    return outcome;
  });
  write(
    options.json === true
      ? `${JSON.stringify({ proposal, changed })}\n`
      : `${changed ? "Rejected" : "Already rejected:"} ${proposal.id}; nothing of it is in the corpus.\n`,
  );
  return proposal;
}

/** `loupe feedback approve <id>`: ingests the triple in-process. */
export async function approveProposalCommand({
  id,
  options,
  env = process.env,
  write = (text) => process.stdout.write(text),
}: {
  id: string;
  options: { tenant?: string; json?: boolean };
  env?: Record<string, string | undefined>;
  write?: Write;
}): Promise<Proposal> {
  // Imported on use, like `gc` and `ingest`: the store pulls in the Milvus SDK.
  const { withLocalServices } = await import("../local-services.ts");
  const { proposal, created } = await withLocalServices({ env }, async ({ feedback, audit, config }) => {
    const tenant = options.tenant ?? config.defaultTenant;
    const outcome = await feedback.approve({ tenant, id, keyId: null });
    if (outcome.created && outcome.proposal.tripleId !== undefined) {
      await audit.record({
        action: "proposal.approve",
        keyId: null,
        tenant,
        route: "cli feedback approve",
        requestId: null,
        itemIds: [outcome.proposal.tripleId],
        detail: { proposalId: id, feedbackId: outcome.proposal.feedbackId },
      });
    }
    return outcome;
  });
  write(
    options.json === true
      ? `${JSON.stringify({ proposal, changed: created })}\n`
      : `${created ? "Approved" : "Already approved:"} ${proposal.id}; stored as triple ${proposal.tripleId}.\n`,
  );
  return proposal;
}

/** Adds `feedback` to the `loupe` program. */
export function registerFeedbackCommand(program: Command): void {
  const feedback = program
    .command("feedback")
    .description("review the triples that feedback on answers proposed: list, approve, reject");
  const tenantOption = "--tenant <tenant>";
  const tenantHelp = "the tenant (default LOUPE_DEFAULT_TENANT)";
  feedback
    .command("proposals")
    .description("list proposed triples (works while loupe serve runs)")
    .option(tenantOption, tenantHelp)
    .option("--status <status>", `one of ${STATUSES.join(", ")} (default pending)`)
    .option("--json", "print JSON")
    .action(async (options: { tenant?: string; status?: string; json?: boolean }) => {
      await listProposalsCommand({ options });
    });
  feedback
    .command("approve")
    .description("ingest a proposed triple into the corpus (in-process: not while loupe serve runs)")
    .argument("<id>", "the proposal's id (fbp_…)")
    .option(tenantOption, tenantHelp)
    .option("--json", "print JSON")
    .action(async (id: string, options: { tenant?: string; json?: boolean }) => {
      await approveProposalCommand({ id, options });
    });
  feedback
    .command("reject")
    .description("reject a proposed triple and let go of its image (works while loupe serve runs)")
    .argument("<id>", "the proposal's id (fbp_…)")
    .option(tenantOption, tenantHelp)
    .option("--json", "print JSON")
    .action(async (id: string, options: { tenant?: string; json?: boolean }) => {
      await rejectProposalCommand({ id, options });
    });
}
