/**
 * Loupe's app (over the route-test services: no Milvus, no model pack) behind the real HTTP server, in a
 * process of its own, so that a test can measure the server's memory alone. Configured by the LOUPE_*
 * variables of its environment; prints `{"url":…}` once listening and stops when its stdin closes.
 */
import { parseConfig } from "../../../src/config.ts";
import { startHttpServer } from "../../../src/http/server.ts";
import { createLogger } from "../../../src/logger.ts";
import { makeTestApp } from "../../helpers/app.ts";

const env = Object.fromEntries(
  Object.entries(process.env).filter(
    (entry): entry is [string, string] => entry[0].startsWith("LOUPE_") && entry[1] !== undefined,
  ),
);
const config = parseConfig({ env });
const server = await startHttpServer({
  fetch: makeTestApp({ env }).fetch,
  host: "127.0.0.1",
  port: 0,
  headersTimeoutMs: config.headersTimeoutMs,
  requestTimeoutMs: config.requestTimeoutMs,
  keepAliveTimeoutMs: config.keepAliveTimeoutMs,
  maxConnections: config.maxConnections,
  logger: createLogger({ level: config.logLevel, destination: process.stderr }),
});
process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);
process.stdin.resume();
process.stdin.on("end", () => {
  server.close({ timeoutMs: 0 }).then(() => process.exit(0));
});
