/**
 * `loupe ask` end to end: in-process (the command opens an embedded Milvus Lite on a temporary
 * LOUPE_DATA_DIR and the bundled pack, runs the chain with the offline composer, and closes them), and
 * with `--url` against an in-process Loupe app streaming server-sent events.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { createAnswerPrinter, runAsk } from "../../src/cli/commands/ask.ts";
import { AppError } from "../../src/errors.ts";
import { createLogger } from "../../src/logger.ts";
import type { ChatEvent } from "../../src/rag/types.ts";
import { createRng, generateQuestions, renderScene, sampleScene } from "../../src/synth/index.ts";
import { openTestServices } from "../helpers/app.ts";

const root = path.join(import.meta.dirname, "..", "..");

/** The answer text as a terminal would show it: deltas since the last reset. */
function streamedAnswer(events: readonly ChatEvent[]): string {
  let text = "";
  for (const event of events) {
    if (event.type === "answer-reset") text = "";
    if (event.type === "answer-delta") text += event.data.text;
  }
  return text;
}

describe("loupe ask", () => {
  let dir: string;
  let env: Record<string, string>;
  const ids: string[] = [];
  let attachedImage: string;
  let question: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-ask-int-"));
    env = {
      LOUPE_DATA_DIR: dir,
      LOUPE_MODEL_PACK: path.join(root, "models", "shapes-world-tiny"),
      LOUPE_VENV_DIR: path.join(root, ".venv"),
      LOUPE_LOG_LEVEL: "silent",
    };
    const rng = createRng(11);
    const form = new FormData();
    for (let index = 0; index < 3; index += 1) {
      const scene = sampleScene(rng);
      const { data } = await renderScene(scene, { size: 128, format: "png", seed: index });
      if (index === 0) {
        // The attached image is a scene of its own, not one of the stored ones.
        attachedImage = path.join(dir, "attached.png");
        await writeFile(attachedImage, data);
        const [color] = generateQuestions(scene, rng, { types: ["color"], perType: 1 });
        if (color === undefined) throw new Error("the scene has a color question");
        question = color.question;
        continue;
      }
      form.append("files", new Blob([new Uint8Array(data)], { type: "image/png" }), `${index}.png`);
    }
    // Indexed through the API of an in-process Loupe, which is then closed so the command can take the
    // data dir's lock.
    const opened = await openTestServices({ env, logger: createLogger({ level: "silent" }) });
    try {
      const response = await createApp(opened).request("/v1/images", { method: "POST", body: form });
      expect(response.status).toBe(200);
      for (const item of ((await response.json()) as { items: { id: string }[] }).items) ids.push(item.id);
    } finally {
      await opened.close();
    }
    expect(ids).toHaveLength(2);
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("streams the answer in-process, cites the attached image, and closes the store", async () => {
    const events: ChatEvent[] = [];
    let printed = "";
    const print = createAnswerPrinter((text) => {
      printed += text;
    });
    const result = await runAsk({
      env,
      question,
      imagePaths: [attachedImage],
      onEvent: (event) => {
        events.push(event);
        print(event);
      },
    });
    expect(result.composer).toBe("offline");
    expect(events.filter((event) => event.type === "answer-delta").length).toBeGreaterThan(0);
    expect(events.at(-1)?.type).toBe("done");
    expect(streamedAnswer(events)).toBe(result.answer);
    expect(result.citations.map((citation) => citation.id)).toContain("att_1");
    expect(printed.startsWith(result.answer)).toBe(true);
    expect(printed).toMatch(/^ {2}\[att_1\] image score 1\.0000$/m);
    expect(printed).toMatch(/^Confidence: \d\.\d\d/m);
    // The data dir's lock was released: a second in-process run can open the store again.
    const again = await runAsk({ env, question, imagePaths: [attachedImage], kinds: ["image"] });
    expect(again.answer).toBe(result.answer);
  }, 180_000);

  it("streams the same answer with --url from a running app, and relays its errors", async () => {
    const opened = await openTestServices({ env, logger: createLogger({ level: "silent" }) });
    try {
      const app = createApp(opened);
      const send = async (input: string, init: RequestInit) => app.request(input, init);
      const events: ChatEvent[] = [];
      const result = await runAsk({
        url: "http://localhost",
        question,
        imagePaths: [attachedImage],
        offline: true,
        onEvent: (event) => events.push(event),
        fetch: send,
      });
      expect(events.map((event) => event.type)).toContain("retrieval");
      expect(events.at(-1)?.type).toBe("done");
      expect(streamedAnswer(events)).toBe(result.answer);
      expect(result.citations.map((citation) => citation.id)).toContain("att_1");

      const refused = await runAsk({
        url: "http://localhost",
        question,
        filter: '[{"field":"metadata.tags","op":"resembles","value":"red"}]',
        fetch: send,
      }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(AppError);
      expect((refused as AppError).code).toBe("invalid_request");
      expect((refused as AppError).message).toMatch(
        /^Ask failed \(400 invalid_request\): .*filter\[0\]\[op\]/,
      );
    } finally {
      await opened.close();
    }
  }, 180_000);
});
