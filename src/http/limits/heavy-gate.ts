/**
 * The cap on heavy requests (cost {@link HEAVY_COST} and more: classify, VQA, chat, chat completions,
 * ingest) running at once per tenant. A slot is taken once the request's body has arrived, so a client
 * sending slowly holds a connection (bounded by the server's request timeout) but no slot, and is held
 * until the answer ends: for an event stream, until the stream is read to its end or cancelled.
 *
 * Past the tenant's cap, the request waits in the process-wide queue of its kind (chat, images, videos,
 * …; `LOUPE_QUEUE_CONCURRENCY` running, `LOUPE_QUEUE_MAX_WAITING` waiting): a full queue, or a wait past
 * `LOUPE_REQUEST_DEADLINE_MS`, answers 503 `overloaded` with `Retry-After`, so under more load than the
 * machine can serve heavy requests are shed early instead of all of them getting slow.
 */
import type { MiddlewareHandler } from "hono";
import type { WorkQueue } from "../../work-queue.ts";
import type { AppEnv } from "../context.ts";
import { callerOf } from "./caller.ts";
import type { ConcurrencyLease } from "./rate-limiter.ts";
import { bodyReadError } from "./request-body.ts";
import { limitsOf } from "./request-limits.ts";
import { TooManyRequestsError } from "./too-many-requests-error.ts";

/** Routes costing this much or more are heavy: they run models or ingest, so their number is capped. */
export const HEAVY_COST = 2;

/**
 * How long a slot is held at most. Longer than any heavy request should run (LLM and video deadlines
 * are minutes); it frees the slot of an answer whose end was never seen.
 */
export const HEAVY_LEASE_TTL_MS = 15 * 60 * 1000;

/**
 * Middleware that holds one of the tenant's heavy slots, then one of the process's slots for the
 * request's kind, while the handler and its answer run.
 */
export function heavyGate(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const limits = limitsOf(c);
    const queue = limits?.queueFor?.(heavyKindOf(c.req.path));
    if (limits === undefined || (limits.maxHeavyPerTenant <= 0 && queue === undefined)) return next();
    await receiveBody(c);
    let lease: ConcurrencyLease | undefined;
    if (limits.maxHeavyPerTenant > 0) {
      const { tenant } = callerOf(c, limits.rate);
      const max = limits.maxHeavyPerTenant;
      lease = await limits.limiter.acquire({ key: `tenant:${tenant}`, max, ttlMs: HEAVY_LEASE_TTL_MS });
      if (lease === undefined) {
        c.header("Retry-After", "1");
        throw new TooManyRequestsError(
          `This tenant already has ${max} heavy requests (chat, ingest, classify, VQA, embeddings) running, the most allowed at once (LOUPE_MAX_HEAVY_PER_TENANT); retry when one has ended.`,
          { code: "too_many_concurrent_requests", retryAfterSeconds: 1, context: { tenant, max } },
        );
      }
    }
    let freeSlot: () => void = () => {};
    const releaseAll = async () => {
      freeSlot();
      await lease?.release();
    };
    let held = false;
    try {
      if (queue !== undefined) freeSlot = await takeSlot(queue, c.req.raw.signal);
      await next();
      held = holdUntilStreamEnds(c, releaseAll);
    } finally {
      if (!held) await releaseAll();
    }
  };
}

/** Kinds that wait in another kind's queue: an OpenAI Responses call runs the same chain as chat. */
const SHARED_QUEUES: Readonly<Record<string, string>> = { responses: "chat" };

/** The kind of a heavy request, named after its path's segment after `/v1/` (`/v1/chat/completions`: `chat`). */
export function heavyKindOf(path: string): string {
  const kind = path.split("/").filter((part) => part.length > 0)[1] ?? "heavy";
  return SHARED_QUEUES[kind] ?? kind;
}

/**
 * Waits for a slot of `queue` and holds it until the returned function is called.
 *
 * @throws OverloadedError when the queue is full or the deadline passes first.
 */
function takeSlot(queue: WorkQueue, signal: AbortSignal | undefined): Promise<() => void> {
  return new Promise<() => void>((started, refused) => {
    queue
      .run(
        () =>
          new Promise<void>((free) => {
            started(() => free());
          }),
        signal === undefined ? {} : { signal },
      )
      .catch(refused);
  });
}

/**
 * Reads the whole body before a slot is taken (into the request's body cache, where the validators and
 * handlers read it from). The route's body limit has already bounded it.
 */
async function receiveBody(c: Parameters<MiddlewareHandler<AppEnv>>[0]): Promise<void> {
  if (c.req.raw.body === null || c.req.raw.bodyUsed || Object.keys(c.req.bodyCache).length > 0) return;
  try {
    await c.req.arrayBuffer();
  } catch (error) {
    throw bodyReadError(error);
  }
}

/** For an event stream, moves `releaseAll` (the lease and the queue slot) to the stream's end; false when there is none. */
function holdUntilStreamEnds(
  c: Parameters<MiddlewareHandler<AppEnv>>[0],
  releaseAll: () => Promise<void>,
): boolean {
  const response = c.res;
  const type = response.headers.get("content-type") ?? "";
  if (response.body === null || !type.toLowerCase().startsWith("text/event-stream")) return false;
  const reader = response.body.getReader();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    releaseAll().catch(() => {});
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          release();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (error) {
        release();
        controller.error(error);
      }
    },
    cancel(reason) {
      release();
      return reader.cancel(reason);
    },
  });
  c.res = new Response(stream, response);
  return true;
}
