/**
 * Key management over HTTP, for keys with the `admin` scope, within the caller's own tenant (an admin
 * key cannot see, make or revoke another tenant's keys; `loupe keys` on the server's machine can):
 * - `POST /v1/admin/keys`: makes a key; the key is in this answer only;
 * - `GET /v1/admin/keys`: the tenant's keys (never the keys themselves);
 * - `DELETE /v1/admin/keys/{id}`: revokes a key; servers on the same store refuse it within seconds.
 * Each change is written to the audit trail (`key.create`, `key.revoke`) with the acting key's id.
 */
import { z } from "@hono/zod-openapi";
import type { AuditLog } from "../../audit/audit-log.ts";
import { EXPIRY_FORMS, parseExpiry } from "../../auth/expiry.ts";
import { type ApiKeyRecord, type KeyStore, keyStatus } from "../../auth/key-store.ts";
import { AppError, ValidationError } from "../../errors.ts";
import { type AppContext, SCOPES } from "../context.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
} from "../openapi.ts";

const scopeSchema = z.enum(SCOPES as [string, ...string[]]);

const rateLimitSchema = z
  .object({
    perSecond: z.number().positive().max(1_000_000).describe("Tokens refilled per second."),
    burst: z.number().int().min(1).max(1_000_000).describe("Most tokens held at once."),
  })
  .meta({ id: "KeyRateLimit" });

/** An API key as listed: everything but the key. */
export const apiKeySchema = z
  .object({
    id: z.string().describe("The key's public id (key_…); what logs and the audit trail name."),
    name: z.string().nullable(),
    tenant: z.string(),
    scopes: z.array(scopeSchema),
    publishable: z
      .boolean()
      .describe("Read-only (chat, media, models, feedback), accepted only from `origins`."),
    origins: z.array(z.string()).describe("Web origins the key may be used from."),
    rateLimit: rateLimitSchema
      .nullable()
      .describe("The key's own rate limit; null: the configured one (LOUPE_RATE_LIMIT_*)."),
    status: z.enum(["active", "revoked", "expired"]),
    createdAt: z.string(),
    expiresAt: z.string().nullable(),
    lastUsedAt: z.string().nullable().describe("Accurate to about a minute."),
    revokedAt: z.string().nullable(),
  })
  .meta({ id: "ApiKey" });

/** Body of a 201 from `POST /v1/admin/keys`: the record and, this once, the key. */
export const createdApiKeySchema = apiKeySchema
  .extend({ key: z.string().describe("The key. It is shown only in this answer; store it now.") })
  .meta({ id: "CreatedApiKey" });

/** Body of `POST /v1/admin/keys`. */
export const createApiKeyRequestSchema = z
  .object({
    tenant: z
      .string()
      .max(128)
      .optional()
      .describe("The key's tenant: the caller's own (the default); another tenant is refused."),
    scopes: z
      .array(scopeSchema)
      .min(1)
      .max(SCOPES.length)
      .optional()
      .describe("What the key may do; required unless `publishable` (always `read` only)."),
    name: z.string().min(1).max(100).optional(),
    publishable: z
      .boolean()
      .optional()
      .describe(
        "A key for a web page: read-only (chat, media, models, feedback), accepted only from `origins`.",
      ),
    origins: z
      .array(z.string().min(1).max(300))
      .max(50)
      .optional()
      .describe(
        "Web origins (`https://app.example.com`) the key may be used from; required when publishable.",
      ),
    expiresIn: z.string().max(40).optional().describe(`When the key expires: ${EXPIRY_FORMS}.`),
    rateLimit: rateLimitSchema.optional().describe("The key's own rate limit; absent: the configured one."),
  })
  .strict()
  .meta({ id: "CreateApiKeyRequest" });

const keyParamsSchema = z.object({
  id: z.string().min(1).max(100).describe("The key's id (key_…)."),
});

const forbiddenResponse = errorResponse(
  "The key lacks the admin scope, or the request names another tenant than the caller's.",
);

/** POST /v1/admin/keys. */
export const createKeyRoute = defineRoute(
  {
    method: "post",
    path: "/v1/admin/keys",
    operationId: "createApiKey",
    tags: ["admin"],
    summary: "Make an API key",
    description:
      "Makes a key for the caller's tenant. The key is in this answer only: Loupe keeps an HMAC of it, never the key.",
    request: {
      body: { required: true, content: { "application/json": { schema: createApiKeyRequestSchema } } },
    },
    responses: {
      201: jsonResponse("The key made, with the key itself (shown this once).", createdApiKeySchema),
      400: invalidRequestResponse,
      403: forbiddenResponse,
    },
  },
  { access: { scope: "admin", cost: 1 } },
);

/** GET /v1/admin/keys. */
export const listKeysRoute = defineRoute(
  {
    method: "get",
    path: "/v1/admin/keys",
    operationId: "listApiKeys",
    tags: ["admin"],
    summary: "List the tenant's API keys",
    description:
      "Every key of the caller's tenant, revoked and expired ones included; never the keys themselves.",
    responses: {
      200: jsonResponse("The keys, oldest first.", z.object({ keys: z.array(apiKeySchema) })),
      403: forbiddenResponse,
    },
  },
  { access: { scope: "admin", cost: 1 } },
);

/** DELETE /v1/admin/keys/{id}. */
export const revokeKeyRoute = defineRoute(
  {
    method: "delete",
    path: "/v1/admin/keys/{id}",
    operationId: "revokeApiKey",
    tags: ["admin"],
    summary: "Revoke an API key",
    description:
      "Revokes a key of the caller's tenant; every server on the same key store refuses it within seconds. Revoking a revoked key changes nothing.",
    request: { params: keyParamsSchema },
    responses: {
      200: jsonResponse("The revoked key.", z.object({ key: apiKeySchema })),
      400: invalidRequestResponse,
      403: forbiddenResponse,
      404: errorResponse("No key with that id for the caller's tenant."),
    },
  },
  { access: { scope: "admin", cost: 1 } },
);

/** A record in the API's shape. */
export function apiKeyToJson(record: ApiKeyRecord): z.infer<typeof apiKeySchema> {
  return {
    id: record.id,
    name: record.name,
    tenant: record.tenant,
    scopes: [...record.scopes],
    publishable: record.publishable,
    origins: [...record.origins],
    rateLimit: record.rateLimit === null ? null : { ...record.rateLimit },
    status: keyStatus(record),
    createdAt: record.createdAt,
    expiresAt: record.expiresAt,
    lastUsedAt: record.lastUsedAt,
    revokedAt: record.revokedAt,
  };
}

/** What the routes use. */
export interface AdminKeysRouteOptions {
  keys: KeyStore;
  audit: AuditLog;
}

/** Who acted, for the audit trail. */
function actor(c: AppContext, route: string) {
  return {
    keyId: c.get("principal").keyId,
    route,
    requestId: c.get("requestId") ?? null,
  };
}

/** The /v1/admin/keys routes. */
export function createAdminKeysRoute({ keys, audit }: AdminKeysRouteOptions) {
  return createRouter()
    .openapi(createKeyRoute, async (c) => {
      const body = c.req.valid("json");
      const tenant = c.get("tenant");
      if (body.tenant !== undefined && body.tenant !== tenant) {
        throw new AppError(
          "forbidden",
          403,
          `An admin key manages the keys of its own tenant (${tenant}) only; keys for ${JSON.stringify(body.tenant.slice(0, 128))} are made with \`loupe keys create\` on the server.`,
        );
      }
      let expiresAt: Date | undefined;
      if (body.expiresIn !== undefined) {
        expiresAt = parseExpiry(body.expiresIn);
        if (expiresAt === undefined) {
          throw new ValidationError(
            `expiresIn ${JSON.stringify(body.expiresIn)} is not allowed; write ${EXPIRY_FORMS}, in the future and at most ten years ahead.`,
          );
        }
      }
      const { key, record } = await keys.create({
        tenant,
        scopes: body.scopes as ApiKeyRecord["scopes"] | undefined,
        name: body.name,
        publishable: body.publishable,
        origins: body.origins,
        expiresAt,
        rateLimit: body.rateLimit,
      });
      await audit.record({
        action: "key.create",
        ...actor(c, "POST /v1/admin/keys"),
        tenant,
        itemIds: [record.id],
        detail: {
          name: record.name,
          scopes: record.scopes,
          publishable: record.publishable,
          origins: record.origins,
          expiresAt: record.expiresAt,
          rateLimit: record.rateLimit,
        },
      });
      c.get("logger").info({ keyId: record.id, scopes: record.scopes }, "API key created");
      c.header("cache-control", "no-store");
      return c.json({ ...apiKeyToJson(record), key }, 201);
    })
    .openapi(listKeysRoute, async (c) => {
      const records = await keys.list({ tenant: c.get("tenant") });
      c.header("cache-control", "no-store");
      return c.json({ keys: records.map(apiKeyToJson) }, 200);
    })
    .openapi(revokeKeyRoute, async (c) => {
      const tenant = c.get("tenant");
      const record = await keys.revoke(c.req.valid("param").id, { tenant });
      await audit.record({
        action: "key.revoke",
        ...actor(c, "DELETE /v1/admin/keys/{id}"),
        tenant,
        itemIds: [record.id],
      });
      c.get("logger").info({ keyId: record.id }, "API key revoked");
      return c.json({ key: apiKeyToJson(record) }, 200);
    });
}
