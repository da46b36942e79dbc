// @ts-check
// A program that depends on the packed `loupe` package, as a user's project would: it opens Loupe on a
// temporary data dir, ingests two images, searches them (directly and through the LangChain retriever)
// and streams a chat turn with LangChain's `streamEvents`. Run by scripts/check-package.sh from a
// scratch directory outside the repository; any failed expectation exits non-zero.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CHAIN_RUN_NAME, createLoupe } from "loupe";

const here = import.meta.dirname;
const dataDir = await mkdtemp(path.join(tmpdir(), "loupe-package-check-"));
const loupe = await createLoupe({
  dataDir,
  // Milvus Lite comes from a Python venv (`pip install -r scripts/requirements-milvus.txt`).
  settings: { LOUPE_VENV_DIR: process.env.LOUPE_VENV_DIR },
});
try {
  const tenant = "default";
  const outcomes = await loupe.ingestImages({
    tenant,
    images: await Promise.all(
      ["red-circle.png", "blue-square.png"].map(async (filename) => ({
        source: {
          type: /** @type {const} */ ("bytes"),
          filename,
          bytes: await readFile(path.join(here, filename)),
        },
        metadata: { title: filename },
      })),
    ),
  });
  const ids = outcomes.map((outcome) => {
    assert.equal(outcome.status, "stored", JSON.stringify(outcome));
    return outcome.id;
  });

  const { items } = await loupe.search.search({ tenant, text: "a red circle", topK: 2 });
  assert.deepEqual(
    items.map((item) => item.id),
    ids,
    "the red circle ranks first for 'a red circle'",
  );
  const documents = await loupe.retriever({ tenant, topK: 1 }).invoke("a blue square");
  assert.equal(documents[0]?.metadata.id, ids[1], "the retriever finds the blue square");

  const names = new Set();
  let deltas = "";
  /** @type {import("loupe").ChatResult | undefined} */
  let result;
  for await (const event of loupe.chain.streamEvents(
    { tenant, question: "What color is the circle?" },
    { version: "v2" },
  )) {
    if (event.event === "on_custom_event") {
      names.add(event.name);
      // A custom event's data is the payload the step dispatched: `{ text }` for an answer delta.
      if (event.name === "answer-delta") deltas += /** @type {{ text: string }} */ (event.data).text;
    } else if (event.event === "on_chain_end" && event.name === CHAIN_RUN_NAME) {
      result = event.data.output;
    }
  }
  assert.ok(names.has("retrieval") && names.has("answer-delta"), `custom events: ${[...names].join(", ")}`);
  assert.ok(result !== undefined, "the chain's end event carries its result");
  assert.equal(result.answer, deltas, "the streamed deltas add up to the answer");
  console.log(
    `package check passed: ${ids.length} images stored, search and retriever found them, ` +
      `streamEvents carried ${[...names].join(", ")}; answer: ${JSON.stringify(result.answer)}`,
  );
} finally {
  await loupe.close();
  await rm(dataDir, { recursive: true, force: true });
}
