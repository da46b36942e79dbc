/**
 * `loupe keys create|list|revoke`: API keys, on the key store under `LOUPE_DATA_DIR` (`auth/keys.json`).
 * Opens only the key store and the audit trail, never the services, so it works while a `loupe serve`
 * runs on the same data dir (which sees a revocation within a few seconds). Each change is written to
 * `<LOUPE_DATA_DIR>/audit.log` as `key.create` / `key.revoke` (with `LOUPE_DATABASE_URL`, keys and trail
 * are the database's); the key itself is printed once, by `create`, and written nowhere.
 *
 * - `loupe keys create --tenant <t> --scopes read,ingest [--name n] [--expires 30d] [--origins <list>]
 *   [--publishable] [--json]`
 * - `loupe keys list [--tenant t] [--json]`
 * - `loupe keys revoke <id> [--json]`
 */
import type { Command } from "commander";
import type { AuditLog } from "../../audit/audit-log.ts";
import { openAuditLog } from "../../audit/open-audit-log.ts";
import { EXPIRY_FORMS, parseExpiry } from "../../auth/expiry.ts";
import {
  type ApiKeyRecord,
  KEY_SCOPES,
  type KeyRateLimit,
  type KeyScope,
  type KeyStore,
  keyStatus,
} from "../../auth/key-store.ts";
import { openKeyStore } from "../../auth/open-key-store.ts";
import { parseConfig } from "../../config.ts";
import { ValidationError } from "../../errors.ts";
import { TENANT_PATTERN } from "../../store/filter.ts";
import { listOption } from "../command-inputs.ts";
import { formatTable } from "../table.ts";

/** Where a command's output goes (tests collect it). */
type Write = (text: string) => void;

/** A record as `--json` prints it. */
function recordJson(record: ApiKeyRecord) {
  return { ...record, status: keyStatus(record) };
}

/** Opens the key store and the audit log of the data dir `env` configures, runs `work`, closes both. */
async function withKeyStore<Result>(
  env: Record<string, string | undefined>,
  work: (stores: { keys: KeyStore; audit: AuditLog }) => Promise<Result>,
): Promise<Result> {
  const config = parseConfig({ env });
  const keys = await openKeyStore({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    secret: config.keySecret,
    tenantPattern: TENANT_PATTERN,
  });
  // On the database of LOUPE_DATABASE_URL when it is set, beside the keys.
  const audit = await openAuditLog({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }).catch(
    async (error: unknown) => {
      await keys.close();
      throw error;
    },
  );
  try {
    return await work({ keys, audit });
  } finally {
    await keys.close();
    await audit.close();
  }
}

/** Options of {@link createKeyCommand}, as the command line gives them. */
export interface CreateKeyOptions {
  tenant: string;
  scopes?: string;
  name?: string;
  expires?: string;
  origins?: string;
  publishable?: boolean;
  rateLimit?: string;
  json?: boolean;
}

/** `--rate-limit 10` or `10/40`: tokens per second, and the burst (default twice the rate). */
function parseRateLimit(text: string): KeyRateLimit {
  const match = /^(\d{1,7}(?:\.\d{1,6})?)(?:\/(\d{1,7}))?$/.exec(text.trim());
  const perSecond = Number(match?.[1]);
  if (match === null || !(perSecond > 0)) {
    throw new ValidationError(
      `--rate-limit ${JSON.stringify(text)} is not allowed; write tokens per second and optionally the burst, e.g. 10 or 10/40.`,
    );
  }
  return {
    perSecond,
    burst: match[2] === undefined ? Math.max(1, Math.ceil(perSecond * 2)) : Number(match[2]),
  };
}

/** `loupe keys create`. */
export async function createKeyCommand({
  options,
  env = process.env,
  write = (text) => process.stdout.write(text),
}: {
  options: CreateKeyOptions;
  env?: Record<string, string | undefined>;
  write?: Write;
}): Promise<void> {
  let expiresAt: Date | undefined;
  if (options.expires !== undefined) {
    expiresAt = parseExpiry(options.expires);
    if (expiresAt === undefined) {
      throw new ValidationError(
        `--expires ${JSON.stringify(options.expires)} is not allowed; write ${EXPIRY_FORMS}, in the future and at most ten years ahead.`,
      );
    }
  }
  const scopes = listOption(options.scopes);
  if (scopes === undefined && options.publishable !== true) {
    throw new ValidationError(
      `--scopes is required; list some of ${KEY_SCOPES.join(", ")}, e.g. --scopes read,ingest.`,
    );
  }
  const { key, record } = await withKeyStore(env, async ({ keys, audit }) => {
    const created = await keys.create({
      tenant: options.tenant,
      scopes: scopes as KeyScope[] | undefined,
      name: options.name,
      expiresAt,
      origins: listOption(options.origins),
      publishable: options.publishable === true,
      rateLimit: options.rateLimit === undefined ? undefined : parseRateLimit(options.rateLimit),
    });
    const made = created.record;
    await audit.record({
      action: "key.create",
      keyId: null,
      tenant: made.tenant,
      route: "cli keys create",
      requestId: null,
      itemIds: [made.id],
      detail: {
        name: made.name,
        scopes: made.scopes,
        publishable: made.publishable,
        origins: made.origins,
        expiresAt: made.expiresAt,
        rateLimit: made.rateLimit,
      },
    });
    return created;
  });
  if (options.json === true) {
    write(`${JSON.stringify({ ...recordJson(record), key })}\n`);
    return;
  }
  const kind = record.publishable ? "publishable key" : "API key";
  const expiry = record.expiresAt === null ? "no expiry" : `expires ${record.expiresAt}`;
  const origins = record.origins.length === 0 ? "" : `; origins ${record.origins.join(", ")}`;
  const rate = record.rateLimit === null ? "" : `; ${formatRate(record)}`;
  write(
    `Created ${kind} ${record.id} for tenant ${record.tenant}: ${record.scopes.join(", ")} (${expiry}${origins}${rate}).\n` +
      "The key, shown only now (Loupe keeps an HMAC of it, not the key):\n" +
      `${key}\n`,
  );
}

/** A key's own rate limit, in words. */
function formatRate(record: ApiKeyRecord): string {
  return record.rateLimit === null ? "" : `${record.rateLimit.perSecond}/s burst ${record.rateLimit.burst}`;
}

/** `loupe keys list`. */
export async function listKeysCommand({
  options,
  env = process.env,
  write = (text) => process.stdout.write(text),
}: {
  options: { tenant?: string; json?: boolean };
  env?: Record<string, string | undefined>;
  write?: Write;
}): Promise<void> {
  const records = await withKeyStore(env, ({ keys }) => keys.list({ tenant: options.tenant }));
  if (options.json === true) {
    write(`${JSON.stringify(records.map(recordJson), null, 2)}\n`);
    return;
  }
  if (records.length === 0) {
    write("No API keys. Make one with: loupe keys create --tenant <tenant> --scopes read,ingest\n");
    return;
  }
  const day = (time: string | null) => (time === null ? "-" : time.slice(0, 16).replace("T", " "));
  const rows = [
    ["ID", "NAME", "TENANT", "SCOPES", "STATUS", "CREATED", "EXPIRES", "LAST USED", "ORIGINS", "RATE"],
  ];
  for (const record of records) {
    rows.push([
      record.id,
      record.name ?? "-",
      record.tenant,
      `${record.scopes.join(",")}${record.publishable ? " (publishable)" : ""}`,
      keyStatus(record),
      day(record.createdAt),
      day(record.expiresAt),
      day(record.lastUsedAt),
      record.origins.join(",") || "-",
      record.rateLimit === null ? "-" : formatRate(record),
    ]);
  }
  write(`${formatTable(rows)}\n`);
}

/** `loupe keys revoke <id>`. */
export async function revokeKeyCommand({
  id,
  options,
  env = process.env,
  write = (text) => process.stdout.write(text),
}: {
  id: string;
  options: { json?: boolean };
  env?: Record<string, string | undefined>;
  write?: Write;
}): Promise<void> {
  const record = await withKeyStore(env, async ({ keys, audit }) => {
    const revoked = await keys.revoke(id);
    await audit.record({
      action: "key.revoke",
      keyId: null,
      tenant: revoked.tenant,
      route: "cli keys revoke",
      requestId: null,
      itemIds: [revoked.id],
    });
    return revoked;
  });
  if (options.json === true) {
    write(`${JSON.stringify(recordJson(record))}\n`);
    return;
  }
  write(
    `Revoked ${record.id} (tenant ${record.tenant}) at ${record.revokedAt}. Servers on this data dir refuse it within a few seconds.\n`,
  );
}

/** Adds `keys` to the `loupe` program. */
export function registerKeysCommand(program: Command): void {
  const keys = program
    .command("keys")
    .description("make, list and revoke API keys (works while loupe serve runs on the same LOUPE_DATA_DIR)");
  keys
    .command("create")
    .description("make an API key for a tenant; the key is printed once")
    .requiredOption("--tenant <tenant>", "the tenant every request with the key acts for")
    .option("--scopes <list>", `comma-separated scopes: ${KEY_SCOPES.join(", ")} (publishable keys: read)`)
    .option("--name <name>", "a label for lists and logs")
    .option("--expires <when>", `when the key stops working: ${EXPIRY_FORMS}`)
    .option(
      "--origins <list>",
      "comma-separated web origins the key may be used from (https://app.example.com)",
    )
    .option("--rate-limit <rate>", "the key's own rate limit: tokens per second[/burst], e.g. 10/40")
    .option(
      "--publishable",
      "a read-only key for a web page (chat, media, models, feedback), accepted only from --origins",
    )
    .option("--json", "print one JSON object (id, key, tenant, scopes, …)")
    .action(async (options: CreateKeyOptions) => {
      await createKeyCommand({ options });
    });
  keys
    .command("list")
    .description("list the keys (never the keys themselves)")
    .option("--tenant <tenant>", "only this tenant's keys")
    .option("--json", "print JSON")
    .action(async (options: { tenant?: string; json?: boolean }) => {
      await listKeysCommand({ options });
    });
  keys
    .command("revoke")
    .description("revoke a key by id; running servers refuse it within a few seconds")
    .argument("<id>", "the key's id (key_…)")
    .option("--json", "print the revoked key's record as JSON")
    .action(async (id: string, options: { json?: boolean }) => {
      await revokeKeyCommand({ id, options });
    });
}
