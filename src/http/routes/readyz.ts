/**
 * GET /readyz — readiness: 200 `{ "status": "ready" }` when the vector store answers its health check
 * and every required shared dependency (PostgreSQL, when `LOUPE_DATABASE_URL` is set) answers its own,
 * else 503 in the error envelope with code `not_ready` and the reasons as the message. A dependency Loupe
 * works around (Redis: rate limits fall back to each process's memory) is listed under `degraded` of a
 * 200. Every check is bounded, so a dependency that hangs makes the probe fail rather than wait.
 */
import { z } from "@hono/zod-openapi";
import { NotReadyError } from "../../errors.ts";
import { createRouter, defineRoute, errorResponse, jsonResponse } from "../openapi.ts";

/** Body of a 200 from /readyz. */
export const readyzResponseSchema = z.object({
  status: z.literal("ready"),
  degraded: z
    .array(z.object({ dependency: z.string(), reason: z.string() }))
    .optional()
    .describe(
      "Dependencies that do not answer but that Loupe works around, each with what it does meanwhile.",
    ),
});

/** What /readyz needs of the vector store: its health check. */
export interface HealthCheckPort {
  health(): Promise<{ ok: boolean; reason?: string }>;
}

/** A shared dependency /readyz checks besides the vector store. */
export interface DependencyCheck {
  /** What it is, in the reasons: `PostgreSQL`, `Redis`. */
  name: string;
  /** Whether Loupe is not ready without it (else it is listed as degraded). */
  required: boolean;
  check(): Promise<{ ok: boolean; reason?: string }>;
}

/** Options of {@link createReadyzRoute}. */
export interface ReadyzRouteOptions {
  store: HealthCheckPort;
  /** Shared dependencies (none in the embedded default). */
  dependencies?: readonly DependencyCheck[];
  /** Longest wait for the health check, in milliseconds. */
  timeoutMs: number;
}

/** GET /readyz. */
export const readyzRoute = defineRoute(
  {
    method: "get",
    path: "/readyz",
    operationId: "getReadyz",
    tags: ["probes"],
    summary: "Readiness",
    description: "200 when the vector store answers its health check, else 503 with the reason.",
    responses: {
      200: jsonResponse("Ready.", readyzResponseSchema),
      503: errorResponse("Not ready (code not_ready); the message says why."),
    },
  },
  { access: { scope: "public" } },
);

/** Runs one health check within `timeoutMs`: undefined when healthy, else why not. */
async function bounded({
  name,
  check,
  timeoutMs,
}: {
  name: string;
  check: () => Promise<{ ok: boolean; reason?: string }>;
  timeoutMs: number;
}): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(
      () => resolve(`${name} did not answer its health check within ${timeoutMs} ms`),
      timeoutMs,
    );
  });
  try {
    const health = check().then(
      (result) => (result.ok ? undefined : (result.reason ?? `${name} reports it is not healthy`)),
      (error: unknown) =>
        `${name} health check failed: ${error instanceof Error ? error.message : String(error)}`,
    );
    return await Promise.race([health, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The /readyz route. */
export function createReadyzRoute(options: ReadyzRouteOptions) {
  return createRouter().openapi(readyzRoute, async (c) => {
    c.header("cache-control", "no-store");
    const { store, dependencies = [], timeoutMs } = options;
    const [storeReason, ...reasons] = await Promise.all([
      bounded({ name: "the vector store", check: () => store.health(), timeoutMs }),
      ...dependencies.map((dependency) =>
        bounded({ name: dependency.name, check: dependency.check, timeoutMs }),
      ),
    ]);
    const failing = [
      ...(storeReason === undefined ? [] : [storeReason]),
      ...dependencies.flatMap((dependency, index) =>
        dependency.required && reasons[index] !== undefined ? [reasons[index] as string] : [],
      ),
    ].map((reason) => reason.replace(/\.$/, ""));
    if (failing.length > 0) {
      const reason = failing.join("; ");
      throw new NotReadyError(`Not ready: ${reason}.`, { context: { reason } });
    }
    const degraded = dependencies.flatMap((dependency, index) =>
      !dependency.required && reasons[index] !== undefined
        ? [{ dependency: dependency.name, reason: reasons[index] as string }]
        : [],
    );
    return c.json({ status: "ready" as const, ...(degraded.length > 0 ? { degraded } : {}) }, 200);
  });
}
