/**
 * `loupe ingest --url` over a server that is not ready for a while: a real HTTP server that answers
 * 503 `not_ready` with `Retry-After` (as Loupe does while its Milvus Lite restarts), or 503 `overloaded`,
 * before it takes the images. The command sends the batches again after the wait the server asks for,
 * logs each retry, stops retrying after a bounded number, and always ends with its summary.
 */

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runIngest } from "../../src/cli/commands/ingest.ts";
import type { RetryNotice } from "../../src/cli/ingest/retry.ts";
import { retryAfterSecondsOf } from "../../src/client/index.ts";

/** A PNG signature and enough bytes to be sent as one; the server here never decodes it. */
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64)]);

type Answer = { status: number; headers?: Record<string, string>; body: unknown };

/** An HTTP server whose `POST /v1/images` answers come from `plan` in turn (the last one repeats). */
async function imagesServer(plan: Array<(files: number) => Answer>): Promise<{
  url: string;
  requests: Array<{ files: number; at: number }>;
  close(): Promise<void>;
}> {
  const requests: Array<{ files: number; at: number }> = [];
  const server: Server = createServer(async (request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const form = await new Response(Buffer.concat(chunks), {
      headers: { "content-type": request.headers["content-type"] ?? "" },
    }).formData();
    const files = form.getAll("files").length;
    requests.push({ files, at: Date.now() });
    const answer = (plan[requests.length - 1] ?? plan.at(-1))?.(files) as Answer;
    response.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
    response.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const notReady = (): Answer => ({
  status: 503,
  headers: { "retry-after": "1" },
  body: {
    error: {
      code: "not_ready",
      message:
        "The vector store is not available: Milvus Lite exited (signal SIGKILL); restarting, attempt 1 of 5. Retry in 1 s.",
      requestId: "r1",
    },
  },
});
const overloaded = (): Answer => ({
  status: 503,
  headers: { "retry-after": "1" },
  body: { error: { code: "overloaded", message: "The ingest queue is full.", requestId: "r2" } },
});
const stored = (files: number): Answer => ({
  status: 200,
  body: {
    items: Array.from({ length: files }, (_, index) => ({ index, status: "stored", id: `img_${index}` })),
    counts: { total: files, pending: 0, done: files, skipped: 0, failed: 0 },
  },
});

let dir: string;
const FILES = 5;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "loupe-ingest-retry-"));
  for (let index = 0; index < FILES; index += 1) await writeFile(path.join(dir, `i${index}.png`), PNG);
});

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("loupe ingest --url against a server that is not ready for a while", () => {
  it("waits the Retry-After the server asks, sends the batch again, and stores everything", async () => {
    const server = await imagesServer([notReady, overloaded, stored]);
    const retries: RetryNotice[] = [];
    try {
      const summary = await runIngest({
        inputs: [dir],
        target: { kind: "remote", url: server.url, batchSize: FILES },
        onRetry: (notice) => retries.push(notice),
      });
      expect(summary).toMatchObject({ total: FILES, stored: FILES, skipped: 0, failed: 0 });
      expect(retries.map(({ code, attempt, items, delayMs }) => ({ code, attempt, items, delayMs }))).toEqual(
        [
          { code: "not_ready", attempt: 1, items: FILES, delayMs: 1000 },
          { code: "overloaded", attempt: 2, items: FILES, delayMs: 1000 },
        ],
      );
      expect(retries[0]?.message).toContain("Milvus Lite exited (signal SIGKILL); restarting");
      expect(server.requests.map(({ files }) => files)).toEqual([FILES, FILES, FILES]);
      // Each retry came after the second the server asked for.
      const [first, second, third] = server.requests.map(({ at }) => at);
      expect((second ?? 0) - (first ?? 0)).toBeGreaterThanOrEqual(950);
      expect((third ?? 0) - (second ?? 0)).toBeGreaterThanOrEqual(950);
    } finally {
      await server.close();
    }
  }, 30_000);

  it("gives up after the bounded retries: every item failed with the reason, and the summary still comes", async () => {
    const server = await imagesServer([notReady]);
    const retries: RetryNotice[] = [];
    try {
      const summary = await runIngest({
        inputs: [dir],
        target: { kind: "remote", url: server.url, batchSize: 2 },
        retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
        onRetry: (notice) => retries.push(notice),
      });
      expect(summary).toMatchObject({ total: FILES, stored: 0, skipped: 0, failed: FILES });
      expect(retries).toHaveLength(2);
      // Once given up, the later batches are not sent at all.
      expect(server.requests).toHaveLength(3);
      for (const failure of summary.failures) {
        expect(failure.code).toBe("not_ready");
        expect(failure.message).toMatch(
          /restarting, attempt 1 of 5.*still after 2 retries; run the command again/,
        );
      }
    } finally {
      await server.close();
    }
  }, 30_000);

  it("keeps going when batches in between succeed: the retry count starts afresh after progress", async () => {
    const server = await imagesServer([notReady, stored, notReady, stored, notReady, stored]);
    try {
      const summary = await runIngest({
        inputs: [dir],
        target: { kind: "remote", url: server.url, batchSize: 2 },
        retry: { attempts: 1, baseDelayMs: 10, maxDelayMs: 20 },
      });
      expect(summary).toMatchObject({ total: FILES, stored: FILES, failed: 0 });
      expect(server.requests).toHaveLength(6);
    } finally {
      await server.close();
    }
  }, 30_000);
});

describe("retryAfterSecondsOf", () => {
  it("reads seconds and HTTP dates, and nothing else", () => {
    expect(retryAfterSecondsOf("3")).toBe(3);
    expect(retryAfterSecondsOf(" 0 ")).toBe(0);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(retryAfterSecondsOf("Thu, 01 Jan 2026 00:00:05 GMT", now)).toBe(5);
    expect(retryAfterSecondsOf("Wed, 31 Dec 2025 23:00:00 GMT", now)).toBe(0);
    expect(retryAfterSecondsOf("soon")).toBeUndefined();
    expect(retryAfterSecondsOf(null)).toBeUndefined();
    expect(retryAfterSecondsOf("-1")).toBeUndefined();
  });
});
