/**
 * Walks the generated OpenAPI document against the app that serves it: every documented operation is
 * called in-process with a request its documented schema accepts (and, where it takes input, one it
 * rejects), and each answer must have a documented status and content type and a body that validates
 * against the documented schema. The schemas are checked as JSON Schema 2020-12 (what OpenAPI 3.1 uses)
 * straight from the document, so a declaration that drifts from what a route validates or returns fails.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import type { Hono } from "hono";
import { expect } from "vitest";
import type { AppEnv } from "../../src/http/context.ts";

/** The parts of an OpenAPI document the walk reads. */
export interface OpenApiDocumentShape {
  openapi: string;
  paths: Record<string, Record<string, OperationShape>>;
  components?: { schemas?: Record<string, unknown> };
}

interface MediaTypeShape {
  schema?: unknown;
}

interface OperationShape {
  operationId?: string;
  parameters?: { name: string; in: string; required?: boolean; schema?: unknown }[];
  requestBody?: { content: Record<string, MediaTypeShape> };
  responses: Record<string, { description: string; content?: Record<string, MediaTypeShape> }>;
}

/** An uploaded file of a multipart request. */
export interface FilePart {
  bytes: Uint8Array;
  filename: string;
  type: string;
}

/** A request of the walk. Path parameters are filled in `path`. */
export interface WalkRequest {
  /** The concrete path, e.g. `/v1/jobs/job_1`; the operation's path when absent. */
  path?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** A JSON body, checked against the documented `application/json` schema. */
  json?: unknown;
  /** A multipart body, checked against the documented `multipart/form-data` schema (files as strings). */
  form?: Record<string, string | FilePart | FilePart[]>;
  /** Statuses this request may get; each must be documented. */
  expect: number[];
  /** Checks the answer further (its parsed body and response), e.g. to keep an id for later cases. */
  check?: (answer: WalkAnswer) => void | Promise<void>;
}

/** A request, or a function making it when its turn comes (from what earlier cases kept). */
export type WalkRequestSource = WalkRequest | (() => WalkRequest);

/** What the walk does for one operation. */
export interface WalkCase {
  /** A request the documented schema accepts. */
  valid: WalkRequestSource;
  /** More requests the documented schemas accept (another content type, a stream, a job). */
  also?: WalkRequestSource[];
  /** A request the documented schema (or, for path parameters, the route) rejects, answered 4xx. */
  invalid?: WalkRequestSource;
}

/** A response of the walk, with its body read. */
export interface WalkAnswer {
  response: Response;
  /** JSON bodies parsed; other bodies as text (binary ones as their length). */
  body: unknown;
}

/** Counts of what a walk checked. */
export interface WalkCounts {
  operations: number;
  requests: number;
  bodiesValidated: number;
}

/** JSON Pointer escaping of one reference token. */
function pointer(token: string): string {
  return token.replaceAll("~", "~0").replaceAll("/", "~1");
}

/** Validators of the document's schemas, compiled on demand by their place in the document. */
export function documentSchemas(document: OpenApiDocumentShape) {
  // Not strict: OpenAPI puts keywords of its own (and descriptions) beside JSON Schema's.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ ...document, $id: "openapi" });
  const cache = new Map<string, ValidateFunction>();
  return (...path: string[]): ValidateFunction => {
    const ref = `openapi#/${path.map(pointer).join("/")}`;
    let validate = cache.get(ref);
    if (validate === undefined) {
      validate = ajv.compile({ $ref: ref });
      cache.set(ref, validate);
    }
    return validate;
  };
}

/**
 * The events of a `text/event-stream` body as an EventSource reader sees them: `event` (`message` when
 * unnamed), `data` (its lines joined) and `id` when given; comment lines skipped.
 */
export function readEventStream(text: string): Array<Record<string, string>> {
  return text
    .split("\n\n")
    .map((block) => block.split("\n").filter((line) => line !== "" && !line.startsWith(":")))
    .filter((lines) => lines.length > 0)
    .map((lines) => {
      const event: Record<string, string> = { event: "message" };
      const data: string[] = [];
      for (const line of lines) {
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") data.push(value);
        else if (field === "event" || field === "id") event[field] = value;
      }
      return { ...event, data: data.join("\n") };
    });
}

/** Expects `value` to validate, naming the schema's place and ajv's errors when it does not. */
function expectValid(validate: ValidateFunction, value: unknown, where: string): void {
  const valid = validate(value);
  expect(valid, `${where}: ${JSON.stringify(validate.errors?.slice(0, 5))}`).toBe(true);
}

/** The multipart fields as the document describes them: files as (binary) strings. */
function formAsDocumented(form: Record<string, string | FilePart | FilePart[]>): Record<string, unknown> {
  const asString = (value: string | FilePart) => (typeof value === "string" ? value : "<binary>");
  return Object.fromEntries(
    Object.entries(form).map(([name, value]) => [
      name,
      Array.isArray(value) ? value.map(asString) : asString(value),
    ]),
  );
}

function formData(form: Record<string, string | FilePart | FilePart[]>): FormData {
  const data = new FormData();
  for (const [name, value] of Object.entries(form)) {
    for (const part of Array.isArray(value) ? value : [value]) {
      if (typeof part === "string") data.append(name, part);
      else data.append(name, new Blob([new Uint8Array(part.bytes)], { type: part.type }), part.filename);
    }
  }
  return data;
}

/** Whether a response content type falls under a documented media range (`image/*`, `*\/*`). */
function coveredBy(contentType: string, range: string): boolean {
  const type = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  if (range === "*/*") return true;
  if (range.endsWith("/*")) return type.startsWith(range.slice(0, -1));
  return type === range;
}

/**
 * Calls `request` on `app` for the operation `method path`, checks the request against the documented
 * request schemas (accepted when `accepted`, else rejected where the schema can tell) and the answer
 * against the documented responses. Returns the answer.
 */
async function walkRequest({
  app,
  document,
  schemaAt,
  method,
  path,
  request,
  accepted,
  counts,
}: {
  app: Hono<AppEnv>;
  document: OpenApiDocumentShape;
  schemaAt: ReturnType<typeof documentSchemas>;
  method: string;
  path: string;
  request: WalkRequest;
  accepted: boolean;
  counts: WalkCounts;
}): Promise<WalkAnswer> {
  const operation = document.paths[path]?.[method] as OperationShape;
  const label = `${method.toUpperCase()} ${path} (${accepted ? "valid" : "invalid"} request)`;
  const bodyContent = operation.requestBody?.content ?? {};
  let body: BodyInit | undefined;
  const headers: Record<string, string> = { "x-request-id": "walk-1", ...request.headers };
  if (request.json !== undefined) {
    expect(bodyContent["application/json"], `${label}: JSON body documented`).toBeDefined();
    const validate = schemaAt("paths", path, method, "requestBody", "content", "application/json", "schema");
    if (accepted) expectValid(validate, request.json, `${label} body against its documented schema`);
    else
      expect(validate(request.json), `${label}: the documented schema accepts the invalid body`).toBe(false);
    body = JSON.stringify(request.json);
    headers["content-type"] = "application/json";
  } else if (request.form !== undefined) {
    expect(bodyContent["multipart/form-data"], `${label}: multipart body documented`).toBeDefined();
    const validate = schemaAt(
      "paths",
      path,
      method,
      "requestBody",
      "content",
      "multipart/form-data",
      "schema",
    );
    if (accepted)
      expectValid(validate, formAsDocumented(request.form), `${label} form against its documented schema`);
    body = formData(request.form);
  }
  for (const parameter of operation.parameters ?? []) {
    if (parameter.in === "query" && request.query?.[parameter.name] !== undefined) {
      const index = (operation.parameters ?? []).indexOf(parameter);
      const validate = schemaAt("paths", path, method, "parameters", String(index), "schema");
      if (accepted) expectValid(validate, request.query[parameter.name], `${label} query ${parameter.name}`);
    }
  }
  const query = request.query === undefined ? "" : `?${new URLSearchParams(request.query).toString()}`;
  const response = await app.request(`${request.path ?? path}${query}`, {
    method: method.toUpperCase(),
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const status = String(response.status);
  const documented = operation.responses[status];
  const contentType = response.headers.get("content-type") ?? "";
  const text =
    contentType.startsWith("image/") || contentType.startsWith("video/") ? undefined : await response.text();
  expect(
    documented,
    `${label}: status ${status} is not documented (body: ${text?.slice(0, 300)})`,
  ).toBeDefined();
  expect(request.expect, `${label}: status ${status} (body: ${text?.slice(0, 300)})`).toContain(
    response.status,
  );
  const content = documented?.content;
  if (content === undefined) {
    return { response, body: text };
  }
  const range = Object.keys(content).find((candidate) => coveredBy(contentType, candidate));
  expect(range, `${label}: content type ${contentType} of ${status} is not documented`).toBeDefined();
  if (text === undefined) {
    const length = (await response.arrayBuffer()).byteLength;
    expect(length, `${label}: empty media body`).toBeGreaterThan(0);
    return { response, body: length };
  }
  if (range === "text/event-stream") {
    // The schema of an event stream describes each event, as a reader parses it (OpenAPI 3.1).
    const validateEvent = schemaAt("paths", path, method, "responses", status, "content", range, "schema");
    for (const event of readEventStream(text)) {
      expectValid(validateEvent, event, `${label}: ${status} event ${JSON.stringify(event).slice(0, 120)}`);
    }
    counts.bodiesValidated += 1;
    return { response, body: text };
  }
  const parsed = range === "application/json" ? (JSON.parse(text) as unknown) : text;
  expectValid(
    schemaAt("paths", path, method, "responses", status, "content", range as string, "schema"),
    parsed,
    `${label}: ${status} ${range} body against its documented schema`,
  );
  counts.bodiesValidated += 1;
  if (response.status >= 400) {
    expect((parsed as { error: { requestId: string } }).error.requestId).toBe(headers["x-request-id"]);
  }
  return { response, body: parsed };
}

/**
 * Walks every operation of `app`'s document with `cases`, keyed `GET /v1/jobs/{id}`. Every documented
 * operation needs a case and every case an operation, so a route added without one fails the walk.
 */
export async function walkDocument({
  app,
  cases,
  only,
}: {
  app: Hono<AppEnv>;
  cases: Record<string, WalkCase>;
  /** Operations to walk, in this order (all of `cases` by default). */
  only?: string[];
}): Promise<WalkCounts> {
  const response = await app.request("/openapi.json");
  expect(response.status).toBe(200);
  const document = (await response.json()) as OpenApiDocumentShape;
  const schemaAt = documentSchemas(document);
  const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
  );
  expect(Object.keys(cases).sort()).toEqual([...operations].sort());
  const counts: WalkCounts = { operations: 0, requests: 0, bodiesValidated: 0 };
  for (const key of only ?? Object.keys(cases)) {
    const walkCase = cases[key] as WalkCase;
    const [method = "", path = ""] = key.split(" ");
    const common = { app, document, schemaAt, method: method.toLowerCase(), path, counts };
    const make = (source: WalkRequestSource) => (typeof source === "function" ? source() : source);
    for (const source of [walkCase.valid, ...(walkCase.also ?? [])]) {
      const request = make(source);
      const answer = await walkRequest({ ...common, request, accepted: true });
      counts.requests += 1;
      await request.check?.(answer);
    }
    if (walkCase.invalid !== undefined) {
      await walkRequest({ ...common, request: make(walkCase.invalid), accepted: false });
      counts.requests += 1;
    }
    counts.operations += 1;
  }
  return counts;
}
