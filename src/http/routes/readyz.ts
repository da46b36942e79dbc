/**
 * GET /readyz — readiness: 200 `{ "status": "ready" }` when the vector store answers its health check,
 * else 503 in the error envelope with code `not_ready` and the reason as the message. The check is
 * bounded, so a Milvus that hangs makes the probe fail rather than wait.
 */
import { z } from "@hono/zod-openapi";
import { NotReadyError } from "../../errors.ts";
import { createRouter, defineRoute, errorResponse, jsonResponse } from "../openapi.ts";

/** Body of a 200 from /readyz. */
export const readyzResponseSchema = z.object({ status: z.literal("ready") });

/** What /readyz needs of the vector store: its health check. */
export interface HealthCheckPort {
  health(): Promise<{ ok: boolean; reason?: string }>;
}

/** Options of {@link createReadyzRoute}. */
export interface ReadyzRouteOptions {
  store: HealthCheckPort;
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

async function checkStore({ store, timeoutMs }: ReadyzRouteOptions): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(
      () => resolve(`the vector store did not answer its health check within ${timeoutMs} ms`),
      timeoutMs,
    );
  });
  try {
    const health = store.health().then(
      (result) => (result.ok ? undefined : (result.reason ?? "the vector store reports it is not healthy")),
      (error: unknown) =>
        `the vector store health check failed: ${error instanceof Error ? error.message : String(error)}`,
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
    const reason = await checkStore(options);
    if (reason !== undefined)
      throw new NotReadyError(`Not ready: ${reason.replace(/\.$/, "")}.`, { context: { reason } });
    return c.json({ status: "ready" as const }, 200);
  });
}
