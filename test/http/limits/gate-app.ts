/**
 * A small app of routes declared with `defineRoute` behind the limits middleware, for the gate tests: a
 * cheap read, a heavy JSON-or-multipart route, heavy event streams (quick and slow), and a route with its
 * own body limit.
 * The principal is fixed by the test, as the authentication middleware would set it.
 */
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { MediaError } from "../../../src/errors.ts";
import type { Principal } from "../../../src/http/context.ts";
import { handleError, handleNotFound } from "../../../src/http/errors.ts";
import { createMemoryRateLimiter } from "../../../src/http/limits/memory-rate-limiter.ts";
import type { RateLimiter } from "../../../src/http/limits/rate-limiter.ts";
import { requestLimits } from "../../../src/http/limits/request-limits.ts";
import { createRouter, defineRoute, jsonResponse } from "../../../src/http/openapi.ts";
import { createLogger } from "../../../src/logger.ts";

const echoSchema = z.object({ text: z.string().optional() }).passthrough();

export interface GateAppOptions {
  principal?: Partial<Principal>;
  limiter?: RateLimiter;
  perSecond?: number;
  burst?: number;
  maxHeavyPerTenant?: number;
  maxJsonBytes?: number;
  /** Resolves the heavy handler: lets a test hold a request in flight. */
  heavyGate?: Promise<void>;
}

/** An app with a cheap read, a heavy JSON route, a heavy event stream, and one with a route body limit. */
export function gateApp(options: GateAppOptions = {}) {
  // A stopped clock: buckets do not refill while a test runs, so counts do not depend on its speed.
  const limiter = options.limiter ?? createMemoryRateLimiter({ now: () => 0 });
  const app = createRouter();
  app.use(requestId());
  app.use(
    requestLimits({
      limiter,
      config: {
        rateLimitPerSecond: options.perSecond ?? 10,
        rateLimitBurst: options.burst ?? 10,
        maxHeavyPerTenant: options.maxHeavyPerTenant ?? 2,
        maxJsonBytes: options.maxJsonBytes ?? 1024,
      },
    }),
  );
  const logger = createLogger({ level: "silent" });
  app.use(async (c, next) => {
    const principal: Principal = {
      keyId: null,
      tenant: "tenant-a",
      scopes: new Set(["read", "ingest"]),
      publishable: false,
      ...options.principal,
    };
    c.set("logger", logger);
    c.set("principal", principal);
    c.set("tenant", principal.tenant);
    await next();
  });
  const read = defineRoute(
    {
      method: "get",
      path: "/read",
      responses: { 200: jsonResponse("ok", z.object({ ok: z.boolean() })) },
    },
    { access: { scope: "read", cost: 1 } },
  );
  const heavy = defineRoute(
    {
      method: "post",
      path: "/heavy",
      request: {
        body: {
          content: {
            "application/json": { schema: echoSchema },
            "multipart/form-data": { schema: z.object({ text: z.string() }) },
          },
        },
      },
      responses: { 200: jsonResponse("echo", z.object({ text: z.string().optional() })) },
    },
    { access: { scope: "ingest", cost: 5 } },
  );
  const stream = defineRoute(
    {
      method: "get",
      path: "/stream",
      responses: { 200: { description: "events" } },
    },
    { access: { scope: "read", cost: 5 } },
  );
  const limited = defineRoute(
    {
      method: "post",
      path: "/limited",
      middleware: [
        bodyLimit({
          maxSize: 100,
          onError: () => {
            throw new MediaError("The route's own limit of 100 bytes.", {
              status: 413,
              code: "payload_too_large",
            });
          },
        }),
      ],
      request: { body: { content: { "application/json": { schema: echoSchema } } } },
      responses: { 200: jsonResponse("echo", echoSchema) },
    },
    { access: { scope: "read", cost: 1 } },
  );
  app.openapi(read, (c) => c.json({ ok: true }, 200));
  app.openapi(heavy, async (c) => {
    await options.heavyGate;
    const type = c.req.header("content-type") ?? "";
    const text = type.startsWith("multipart/") ? c.req.valid("form").text : c.req.valid("json").text;
    return c.json({ text }, 200);
  });
  app.openapi(stream, () => {
    const encoder = new TextEncoder();
    let sent = 0;
    return new Response(
      new ReadableStream({
        pull(controller) {
          sent += 1;
          if (sent > 3) controller.close();
          else controller.enqueue(encoder.encode(`data: ${sent}\n\n`));
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
  });
  app.openapi(limited, (c) => c.json(c.req.valid("json"), 200));
  // An event every 100 ms, 50 at most: long enough for a client to leave in the middle.
  const slowStream = defineRoute(
    { method: "get", path: "/slow-stream", responses: { 200: { description: "events" } } },
    { access: { scope: "read", cost: 5 } },
  );
  app.openapi(slowStream, () => {
    const encoder = new TextEncoder();
    let sent = 0;
    return new Response(
      new ReadableStream({
        async pull(controller) {
          if (sent > 0) await new Promise((resolve) => setTimeout(resolve, 100));
          sent += 1;
          if (sent > 50) controller.close();
          else controller.enqueue(encoder.encode(`data: ${sent}\n\n`));
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
  });
  app.onError(handleError);
  app.notFound(handleNotFound);
  return app;
}
