/**
 * `npm run bench:limits [-- options]`: what the limits cost per request. The same routes, declared with
 * `defineRoute` as Loupe's are, run in-process twice: with the limits middleware (the in-memory limiter,
 * each call charged to a client address and, on the heavy route, a tenant slot held) and without it (the
 * gates pass through; a JSON body is still read by the body gate, within the default limit). The two
 * alternate round by round so that they see the same machine load; the median of the rounds is shown.
 *
 * Routes: `GET /read` (cost 1, no body) and `POST /heavy` (cost 5, a JSON body of --body-bytes).
 *
 * Options: --requests <n> per round and route (default 5000), --rounds <n> (default 5), --body-bytes <n>
 * (default 1024).
 */
import { parseArgs } from "node:util";
import { z } from "@hono/zod-openapi";
import { createMemoryRateLimiter } from "../src/http/limits/memory-rate-limiter.ts";
import { requestLimits } from "../src/http/limits/request-limits.ts";
import { createRouter, defineRoute, jsonResponse } from "../src/http/openapi.ts";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "5000" },
    rounds: { type: "string", default: "5" },
    "body-bytes": { type: "string", default: "1024" },
  },
});
const requests = Number(values.requests);
const rounds = Number(values.rounds);
const bodyBytes = Number(values["body-bytes"]);

function benchApp({ limits }: { limits: boolean }) {
  const app = createRouter();
  if (limits) {
    app.use(
      requestLimits({
        limiter: createMemoryRateLimiter(),
        // A bucket no run empties: what is measured is the bookkeeping, not refusals.
        config: {
          rateLimitPerSecond: 1e6,
          rateLimitBurst: 1e6,
          maxHeavyPerTenant: 8,
          maxJsonBytes: 32 * 1024 * 1024,
        },
      }),
    );
  }
  app.use(async (c, next) => {
    c.set("tenant", "bench");
    c.set("principal", {
      keyId: null,
      tenant: "bench",
      scopes: new Set(["read", "ingest"]),
      publishable: false,
    });
    await next();
  });
  const read = defineRoute(
    { method: "get", path: "/read", responses: { 200: jsonResponse("ok", z.object({ ok: z.boolean() })) } },
    { access: { scope: "read", cost: 1 } },
  );
  const heavy = defineRoute(
    {
      method: "post",
      path: "/heavy",
      request: { body: { content: { "application/json": { schema: z.object({ text: z.string() }) } } } },
      responses: { 200: jsonResponse("ok", z.object({ length: z.number() })) },
    },
    { access: { scope: "ingest", cost: 5 } },
  );
  app.openapi(read, (c) => c.json({ ok: true }, 200));
  app.openapi(heavy, (c) => c.json({ length: c.req.valid("json").text.length }, 200));
  return app;
}

type BenchApp = ReturnType<typeof benchApp>;
const body = JSON.stringify({ text: "x".repeat(Math.max(0, bodyBytes - 11)) });
// The node-server bindings an app behind Loupe's server gets: the client's address.
const bindings = { incoming: { socket: { remoteAddress: "192.0.2.1" } } };

/** Microseconds per request over `requests` sequential calls of `path`. */
async function timeRoute(app: BenchApp, path: "/read" | "/heavy"): Promise<number> {
  const init: RequestInit =
    path === "/read" ? {} : { method: "POST", headers: { "content-type": "application/json" }, body };
  const started = performance.now();
  for (let index = 0; index < requests; index += 1) {
    const response = await app.request(path, init, bindings);
    if (response.status !== 200) throw new Error(`${path} answered ${response.status}`);
    await response.arrayBuffer();
  }
  return ((performance.now() - started) * 1000) / requests;
}

const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)] ?? Number.NaN;

const apps = { without: benchApp({ limits: false }), with: benchApp({ limits: true }) };
const figures: Record<string, number[]> = {};
// One round of warm-up, not counted.
for (const app of Object.values(apps))
  for (const path of ["/read", "/heavy"] as const) await timeRoute(app, path);
for (let round = 0; round < rounds; round += 1) {
  for (const path of ["/read", "/heavy"] as const) {
    for (const [name, app] of Object.entries(apps)) {
      const key = `${path} ${name}`;
      figures[key] ??= [];
      figures[key].push(await timeRoute(app, path));
    }
  }
}
console.log(
  `${requests} requests × ${rounds} rounds per cell, in-process; µs per request (median of rounds)\n`,
);
console.log("| route | without limits | with limits | overhead |");
console.log("| --- | ---: | ---: | ---: |");
for (const [path, label] of [
  ["/read", "GET /read (cost 1)"],
  ["/heavy", `POST /heavy (cost 5, ${bodyBytes} B JSON)`],
] as const) {
  const without = median(figures[`${path} without`] ?? []);
  const withLimits = median(figures[`${path} with`] ?? []);
  console.log(
    `| ${label} | ${without.toFixed(1)} | ${withLimits.toFixed(1)} | ${(withLimits - without).toFixed(1)} µs (${(((withLimits - without) / without) * 100).toFixed(0)}%) |`,
  );
}
