/**
 * Heavy routes shed load with 503 `overloaded` and `Retry-After` when their queue is full or a request
 * waited past its deadline (LOUPE_QUEUE_CONCURRENCY, LOUPE_QUEUE_MAX_WAITING, LOUPE_REQUEST_DEADLINE_MS),
 * through the whole app over a real Milvus Lite and the bundled pack.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type IngestHarness, multipart, renderShapes, startIngestHarness } from "../../ingest/harness.ts";

interface Envelope {
  error: { code: string; message: string; requestId: string };
}

async function chat(harness: IngestHarness, question: string): Promise<Response> {
  return harness.app.request("/v1/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ question, composer: "offline" }),
  });
}

async function seed(harness: IngestHarness): Promise<void> {
  const images = await renderShapes({ count: 6, seed: 5 });
  const response = await harness.app.request("/v1/images", {
    method: "POST",
    body: multipart({ files: images.map((bytes, index) => ({ name: `s${index}.jpg`, bytes })) }),
  });
  expect(response.status).toBe(200);
}

describe("overloaded heavy routes", () => {
  let harness: IngestHarness | undefined;

  afterEach(async () => {
    await harness?.dispose();
    harness = undefined;
  });

  it("answer 503 overloaded with Retry-After when the queue is full, and serve what fits", async () => {
    harness = await startIngestHarness({
      name: "overloadfull",
      env: { LOUPE_QUEUE_CONCURRENCY: "1", LOUPE_QUEUE_MAX_WAITING: "1", LOUPE_REQUEST_DEADLINE_MS: "0" },
    });
    await seed(harness);
    const questions = [
      "Is there an image with a red circle and a blue square?",
      "Which images show a green triangle?",
      "Is there an image with a yellow star?",
      "Which images show a blue circle?",
      "Is there an image with a purple square?",
    ];
    const responses = await Promise.all(
      questions.map((question) => chat(harness as IngestHarness, question)),
    );
    const statuses = responses.map((response) => response.status);
    // One runs, one waits, the other three are refused at once.
    expect(statuses.filter((status) => status === 200)).toHaveLength(2);
    const refused = responses.filter((response) => response.status === 503);
    expect(refused).toHaveLength(3);
    for (const response of refused) {
      expect(response.headers.get("retry-after")).toBe("1");
      const body = (await response.json()) as Envelope;
      expect(body.error.code).toBe("overloaded");
      expect(body.error.message).toMatch(/The chat queue is full: 1 running and 1 waiting/);
      expect(body.error.message).toMatch(/LOUPE_QUEUE_MAX_WAITING/);
      expect(body.error.requestId.length).toBeGreaterThan(0);
    }
    // Searches are not heavy: they are served while chat sheds.
    const search = await harness.app.request("/v1/search", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "a red circle" }),
    });
    expect(search.status).toBe(200);
  }, 120_000);

  it("drop a request that waited past LOUPE_REQUEST_DEADLINE_MS with 503 overloaded and Retry-After", async () => {
    harness = await startIngestHarness({
      name: "overloaddeadline",
      env: { LOUPE_QUEUE_CONCURRENCY: "1", LOUPE_QUEUE_MAX_WAITING: "8", LOUPE_REQUEST_DEADLINE_MS: "1" },
    });
    await seed(harness);
    const images = await renderShapes({ count: 2, seed: 77 });
    const ingest = (index: number) =>
      (harness as IngestHarness).app.request("/v1/images", {
        method: "POST",
        body: multipart({ files: [{ name: `late-${index}.jpg`, bytes: images[index] as Uint8Array }] }),
      });
    const [first, second] = await Promise.all([ingest(0), ingest(1)]);
    expect(first?.status).toBe(200);
    expect(second?.status).toBe(503);
    expect(second?.headers.get("retry-after")).toBe("1");
    const body = (await second?.json()) as Envelope;
    expect(body.error.code).toBe("overloaded");
    expect(body.error.message).toMatch(/before its deadline \(1 ms, LOUPE_REQUEST_DEADLINE_MS\)/);
    // The dropped image was never stored.
    const count = await harness.store.count({ kind: "image", tenant: "default" });
    expect(count).toBe(7);
  }, 120_000);
});
