/**
 * The HTTP contract in one place per route: each route file declares its routes with
 * {@link defineRoute} (method, path, parameters, bodies per content type, and every response with its
 * schema), mounts them with `router.openapi(route, handler)` on a {@link createRouter} router, and the
 * OpenAPI 3.1 document is generated from those declarations ({@link buildOpenApiDocument}). The
 * declarations validate the requests too: a parameter or body that fails its schema goes through
 * {@link validationHook}, the one place a validation failure becomes the error envelope.
 */

import { readFileSync } from "node:fs";
import { createRoute, type Hook, OpenAPIHono, type RouteConfig, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { AppError, invalidInput, ValidationError } from "../errors.ts";
import { accessGate, type RouteAccess } from "./access.ts";
import type { AppEnv } from "./context.ts";
import { errorEnvelopeSchema } from "./errors.ts";
import { HEAVY_COST, heavyGate } from "./limits/heavy-gate.ts";
import { type BodyLimitAdvice, bodyIsEmpty, readBodyWithin } from "./limits/request-body.ts";
import { DEFAULT_MAX_JSON_BYTES, limitsOf } from "./limits/request-limits.ts";

/** What a validation target is called in messages. */
const subjectByTarget: Record<string, string> = {
  json: "request",
  form: "request",
  query: "query",
  param: "path",
  header: "headers",
  cookie: "cookies",
};

/**
 * The hook every route validates with: a failure is a 400 `invalid_request` whose message lists each
 * problem with its field, what is allowed, and the offending value.
 */
export const validationHook: Hook<unknown, AppEnv, string, unknown> = (result) => {
  if (!result.success) {
    throw invalidInput(result.error, {
      input: (result as { data?: unknown }).data,
      subject: subjectByTarget[result.target] ?? "request",
    });
  }
};

/** A router whose routes validate with their declarations through {@link validationHook}. */
export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}

/** A JSON response of a declared route. */
export function jsonResponse<Schema extends z.ZodType>(description: string, schema: Schema) {
  return { description, content: { "application/json": { schema } } };
}

/** An error response of a declared route: the error envelope. */
export function errorResponse(description: string) {
  return jsonResponse(description, errorEnvelopeSchema);
}

/** 400 of every route that reads a request. */
export const invalidRequestResponse = errorResponse(
  "Invalid request; the message names each problem, what is allowed, and the offending value.",
);

/** 503 of every route that needs the vector store or the model pack. */
export const notReadyResponse = errorResponse("The vector store or the model pack is not available.");

/**
 * 415 and 422 of every route that decodes an image it is sent (inline, uploaded or fetched from a URL);
 * its 413 (over the byte or pixel limit) is the route's own, with the limit that applies.
 */
export const imageInputResponses = {
  415: errorResponse(
    "An image is of a format Loupe does not read (code `media_unsupported`; allowed: jpeg, png, webp, gif); on a route that fetches image URLs, also a URL that answered a content type that is not an image.",
  ),
  422: errorResponse(
    "An image could not be decoded (code `media_invalid`); on a route that fetches image URLs, also a URL that could not be fetched (code `url_fetch_failed`).",
  ),
};

/**
 * One server-sent event, the schema each event of a `text/event-stream` response is described by (in
 * OpenAPI 3.1 the schema of an event stream describes one event, as its readers parse it: the fields of
 * the event, not the stream's text).
 */
export const serverSentEventSchema = z
  .object({
    event: z
      .string()
      .describe(
        "The event's name (`event:` line); `message` when the event has none, as with OpenAI's chunks. The operation's description names its events.",
      ),
    data: z
      .string()
      .meta({ contentMediaType: "application/json" })
      .describe("One JSON document (`data:` line); OpenAI's stream ends with the text `[DONE]`."),
    id: z.string().optional().describe("The event's id (`id:` line), when it has one."),
  })
  .meta({ id: "ServerSentEvent" });

/** The `content` of a response that is an event stream, described event by event. */
export const eventStreamContent = { "text/event-stream": { schema: serverSentEventSchema } };

/** 413 of every route with a body limit. */
export function payloadTooLargeResponse(limit: string) {
  return errorResponse(`The body is over the limit (${limit}); answered before it is read.`);
}

/** An uploaded file in a multipart body; `error` replaces zod's message when the part is text. */
export function uploadSchema(description: string, error?: string) {
  return z
    .file(error === undefined ? undefined : { error })
    .meta({ type: "string", contentMediaType: "application/octet-stream", description });
}

/** A multipart field given once or repeated (the form parser makes repeats a list). */
export function repeatable<Schema extends z.ZodType>(schema: Schema, error?: string) {
  return z.union([schema, z.array(schema)], error === undefined ? undefined : { error });
}

/** The values of a {@link repeatable} field as a list. */
export function asList<Value>(value: Value | Value[] | undefined): Value[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** How the body gate of a route answers a content type it does not declare. */
export interface BodyGateOptions {
  /** 400 (`invalid_request`, the default) or 415 (`unsupported_media_type`). */
  unsupportedStatus?: 400 | 415;
  /** An empty JSON body stands for `{}` (all defaults) instead of being malformed JSON. */
  emptyJsonIsObject?: boolean;
}

const JSON_TYPE = /^application\/([\w.-]+\+)?json$/;

/** The media type of a `content-type` header, lower case, without parameters. */
function mediaTypeOf(header: string | undefined): string {
  return (header ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/** What a JSON body over `LOUPE_MAX_JSON_BYTES` is told to do, by whether the route takes multipart. */
function jsonLimitAdvice(types: readonly string[]): BodyLimitAdvice {
  return {
    setting: "LOUPE_MAX_JSON_BYTES",
    fix: types.includes("multipart/form-data")
      ? "Send images and videos as multipart/form-data uploads instead of base64 or data URLs in JSON, or raise LOUPE_MAX_JSON_BYTES."
      : "Send fewer or smaller inline images, refer to stored items by id, or send images as multipart uploads to a route that takes them (POST /v1/chat takes them; this one does not); or raise LOUPE_MAX_JSON_BYTES.",
  };
}

/**
 * Checks a request body before the declaration validates it: its content type must be one the route
 * declares, and a JSON body must parse into one object. Both get one message each, the same on every
 * route, instead of the validators' generic ones. A JSON body is read here, at most
 * `LOUPE_MAX_JSON_BYTES` counted as it arrives (413 as soon as it is passed), and its text cached for the
 * validator; when the route has body limits of its own after this gate (`rereadable`), the request is
 * given the bytes again so that they can count them.
 */
function bodyGate(
  types: readonly string[],
  { rereadable, ...options }: BodyGateOptions & { rereadable: boolean },
): MiddlewareHandler<AppEnv> {
  const declaresJson = types.some((type) => JSON_TYPE.test(type));
  const advice = jsonLimitAdvice(types);
  const refuse = (type: string) => {
    const message = `Unsupported content type ${JSON.stringify(type.slice(0, 80) || "(none)")}; send ${types.join(" or ")}.`;
    return options.unsupportedStatus === 415
      ? new AppError("unsupported_media_type", 415, message)
      : new ValidationError(message);
  };
  return async (c, next) => {
    const type = mediaTypeOf(c.req.header("content-type"));
    if (type === "") {
      // No content type: no validator runs, so only a route whose body may be left out takes none.
      if (options.emptyJsonIsObject !== true || !(await bodyIsEmpty(c))) throw refuse(type);
      return next();
    }
    if (!types.includes(type) && !(declaresJson && JSON_TYPE.test(type))) throw refuse(type);
    if (JSON_TYPE.test(type)) {
      const limit = limitsOf(c)?.maxJsonBytes ?? DEFAULT_MAX_JSON_BYTES;
      const bytes = await readBodyWithin(c, { limit, advice });
      if (rereadable) c.req.raw = new Request(c.req.raw, { body: bytes as Uint8Array<ArrayBuffer> });
      const text = new TextDecoder().decode(bytes);
      const cache = c.req.bodyCache as { text?: Promise<string> };
      if (options.emptyJsonIsObject === true && text.trim().length === 0) {
        // The validator parses the cached text, so an empty body reads as the empty object.
        cache.text = Promise.resolve("{}");
        return next();
      }
      cache.text = Promise.resolve(text);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new ValidationError("The request body is not valid JSON.");
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new ValidationError("The request body must be a JSON object.");
      }
    }
    return next();
  };
}

/** Options of {@link defineRoute}: who may call the route and what a call costs, and how its body gate answers. */
export interface DefineRouteOptions extends BodyGateOptions {
  access: RouteAccess;
}

/** 429 of every route with a cost. */
const tooManyRequestsResponse = {
  ...errorResponse(
    "Too many requests: the caller's rate limit is spent (code `rate_limited`), or, on a heavy route (cost 2 and more), the tenant already runs the most heavy requests allowed at once (code `too_many_concurrent_requests`). `Retry-After` says when to retry.",
  ),
  headers: {
    "Retry-After": {
      description: "Seconds to wait before retrying.",
      schema: { type: "integer" as const, minimum: 1 },
    },
    RateLimit: {
      description:
        'What is left of the caller\'s bucket (IETF draft-ietf-httpapi-ratelimit-headers), e.g. `"default";r=0;t=2`: `r` tokens left, full again in `t` seconds.',
      schema: { type: "string" as const },
    },
    "RateLimit-Policy": {
      description:
        'The caller\'s bucket, e.g. `"default";q=100;w=2`: `q` tokens, refilled completely in `w` seconds; `"key"` when the API key carries its own rate.',
      schema: { type: "string" as const },
    },
  },
};

/** What the 413 of a route with a JSON body says about `LOUPE_MAX_JSON_BYTES`. */
const jsonLimitText =
  "A JSON body over LOUPE_MAX_JSON_BYTES is answered as soon as its Content-Length or its bytes pass the limit.";

/**
 * The declared responses plus those every route of its kind can give: 429 on a route with a cost,
 * 413 on a route with a body (its own 413, if it declares one, is told about the JSON limit too).
 */
function withLimitResponses(route: RouteConfig, access: RouteAccess): RouteConfig["responses"] {
  const responses: RouteConfig["responses"] = { ...route.responses };
  if (access.scope !== "public" && responses[429] === undefined) responses[429] = tooManyRequestsResponse;
  const types = Object.keys(route.request?.body?.content ?? {});
  if (types.some((type) => JSON_TYPE.test(type))) {
    const declared = responses[413];
    responses[413] =
      declared === undefined || "$ref" in declared
        ? errorResponse(`The body is over the limit. ${jsonLimitText}`)
        : { ...declared, description: `${declared.description} ${jsonLimitText}` };
  }
  return responses;
}

/**
 * Declares a route (`createRoute`) with its access rule and, for a route with a body, the body gate for
 * the content types its body declares, so that both are written once: in the declaration the document is
 * generated from. The gates run in this order, so that no work is done for a request a cheaper check
 * refuses: the access gate (scope, then the cost taken from the caller's rate limit, before any body is
 * read), the body gate (content type; a JSON body read within LOUPE_MAX_JSON_BYTES), the route's own
 * middleware (its body limits), then, on a heavy route, the tenant's cap on heavy requests at once.
 */
export function defineRoute<Route extends RouteConfig>(
  route: Route,
  { access, ...bodyOptions }: DefineRouteOptions,
): Route {
  const content = route.request?.body?.content;
  const middleware =
    route.middleware === undefined
      ? []
      : Array.isArray(route.middleware)
        ? route.middleware
        : [route.middleware];
  const declared = {
    ...route,
    responses: withLimitResponses(route, access),
    ...(access.scope === "public" ? {} : { "x-loupe-scope": access.scope, "x-loupe-cost": access.cost }),
  };
  const heavy = access.scope !== "public" && access.cost >= HEAVY_COST;
  return createRoute({
    ...declared,
    middleware: [
      ...accessGate(access),
      ...(content === undefined
        ? []
        : [bodyGate(Object.keys(content), { ...bodyOptions, rereadable: middleware.length > 0 })]),
      ...middleware,
      ...(heavy ? [heavyGate()] : []),
    ],
  }) as Route;
}

const packageVersion = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** Options of {@link buildOpenApiDocument}. */
export interface BuildOpenApiDocumentOptions {
  /** The router every route was mounted on. */
  router: OpenAPIHono<AppEnv>;
  /** The API's version; the package's by default. */
  version?: string;
}

/** The security schemes of the document: an API key as a bearer token or in `x-api-key`. */
const securitySchemes = {
  bearerAuth: {
    type: "http" as const,
    scheme: "bearer",
    description: "An API key as `Authorization: Bearer <key>` (what OpenAI clients send).",
  },
  apiKeyHeader: {
    type: "apiKey" as const,
    in: "header" as const,
    name: "x-api-key",
    description: "An API key in the `x-api-key` header.",
  },
};

/** Either scheme satisfies an operation that needs a key. */
const keyRequirement: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/** An error response in the document, referring to the `Error` component. */
function documentedError(description: string, headers?: Record<string, unknown>) {
  return {
    description,
    ...(headers === undefined ? {} : { headers }),
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  };
}

/** What the trust boundary may answer on any route that needs a key. */
const unauthorizedDocumented = documentedError(
  "No API key, or one that is unknown, revoked or expired (code `unauthorized` or `invalid_api_key`). Only while at least one key exists and LOUPE_AUTH is not `none`.",
  {
    "WWW-Authenticate": {
      description: 'Always `Bearer realm="loupe"`.',
      schema: { type: "string" },
    },
  },
);
const forbiddenDocumented = documentedError(
  "The key lacks the scope in `x-loupe-scope` or is publishable and the route is not chat, media, models or feedback (code `forbidden`), or the request came from a web origin the key does not list (code `origin_not_allowed`).",
);
const authUnavailableText =
  "Also when the server cannot read its API keys (code `auth_unavailable`; the server log says why).";
const authUnavailableDocumented = documentedError(
  "The server cannot read its API keys (code `auth_unavailable`; the server log says why).",
);
const misdirectedDocumented = documentedError(
  "The request's Host is not one this server answers to (code `host_not_allowed`; see LOUPE_ALLOWED_HOSTS).",
);
const requestTimeoutDocumented = documentedError(
  "The request did not arrive in time (code `request_timeout`; see LOUPE_HEADERS_TIMEOUT_MS and LOUPE_REQUEST_TIMEOUT_MS). Answered by the server before any route, and the connection closed.",
);
const headersTooLargeDocumented = documentedError(
  "The request line and headers together are over the server's limit, 16 KiB (code `headers_too_large`): a long query string counts. Answered by the server before any route, and the connection closed.",
);

/**
 * The OpenAPI 3.1 document of every route declared on `router`, with the API key security schemes:
 * each operation with an `x-loupe-scope` needs a key (and may answer 401 and 403), the others (probes,
 * this document, /docs) need none, and may answer 503 when the key store cannot be read; every operation
 * may answer 421 for a foreign `Host`, and 408 and 431 for a request the server refuses before any route
 * (too slow, or headers and query over its limit).
 */
export function buildOpenApiDocument({ router, version = packageVersion }: BuildOpenApiDocumentOptions) {
  const document = router.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "Loupe API",
      version,
      description:
        "Multimodal retrieval over images, video segments and image-question-answer triples. Every error has the body { error: { code, message, requestId } }; the request id is also in the x-request-id header. Once an API key exists, every operation but the probes, this document and /docs needs one, as `Authorization: Bearer <key>` or `x-api-key: <key>`; `x-loupe-scope` names the scope an operation needs (read, ingest, delete or admin).",
    },
    tags: [
      { name: "probes", description: "Liveness and readiness." },
      { name: "search", description: "Search, recommendation, classification and VQA." },
      {
        name: "recommendations",
        description:
          "Items like some and unlike others; users' events and the recommendations ranked from them.",
      },
      {
        name: "classifiers",
        description: "Few-shot classifiers taught from a few examples per label, and their predictions.",
      },
      { name: "chat", description: "Grounded answers, in Loupe's format and OpenAI's." },
      { name: "ingest", description: "Adding images, videos and triples." },
      { name: "jobs", description: "Ingests that run in the background." },
      { name: "items", description: "Stored media and deletion." },
      { name: "admin", description: "API keys of the caller's tenant (admin scope)." },
      {
        name: "metrics",
        description: "Prometheus metrics of the whole server (admin scope once keys exist).",
      },
      { name: "reference", description: "This document and its reference page." },
    ],
    security: keyRequirement,
  });
  document.components = { ...document.components, securitySchemes };
  for (const methods of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(methods as Record<string, Record<string, unknown>>)) {
      const responses = (operation.responses ?? {}) as Record<string, unknown>;
      if (operation["x-loupe-scope"] === undefined) {
        operation.security = [];
      } else {
        operation.security = keyRequirement;
        responses[401] ??= unauthorizedDocumented;
        responses[403] ??= forbiddenDocumented;
        const unavailable = responses[503] as { description?: string } | undefined;
        responses[503] =
          unavailable?.description === undefined
            ? authUnavailableDocumented
            : { ...unavailable, description: `${unavailable.description} ${authUnavailableText}` };
      }
      responses[421] ??= misdirectedDocumented;
      responses[408] ??= requestTimeoutDocumented;
      responses[431] ??= headersTooLargeDocumented;
      operation.responses = responses;
    }
  }
  return document;
}

/** The OpenAPI document, as generated. */
export type OpenApiDocument = ReturnType<typeof buildOpenApiDocument>;
