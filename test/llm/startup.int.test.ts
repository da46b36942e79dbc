import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/logger.ts";
import { startLoupe } from "../../src/main.ts";
import type { Evidence } from "../../src/rag/types.ts";
import { openTestServices as openServices } from "../helpers/app.ts";
import { messageText, type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";
import { processesMentioning } from "../helpers/processes.ts";

const root = path.join(import.meta.dirname, "..", "..");
const quiet = createLogger({ level: "silent" });

describe("Loupe start-up and the LLM layer", () => {
  let work: string;
  let llm: OpenAiTestServer;

  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), "loupe-llm-startup-"));
    llm = await startOpenAiTestServer({ apiKey: "sk-local-test" });
  });
  afterAll(async () => {
    await llm?.close();
    await rm(work, { recursive: true, force: true });
  });

  function env(overrides: Record<string, string>): Record<string, string> {
    return {
      PORT: "0",
      LOUPE_EMBEDDING_DIM: "8",
      LOUPE_VENV_DIR: path.join(root, ".venv"),
      LOUPE_DATA_DIR: path.join(work, "data"),
      ...overrides,
    };
  }

  it("a prompt missing a variable Loupe fills stops start-up, naming the file and the fix, before Milvus Lite starts", async () => {
    const prompts = path.join(work, "broken-prompts");
    await mkdir(prompts);
    const text = await readFile(path.join(root, "prompts", "answer.v1.md"), "utf8");
    const broken = text
      .replace("Conversation so far:\n{{history}}\n", "")
      .replace(/variables: \[.*\]/, "variables: [question, evidence]");
    expect(broken).not.toContain("{{history}}");
    await writeFile(path.join(prompts, "answer.v1.md"), broken);
    const dataDir = path.join(work, "data-broken");

    const failure = await startLoupe({
      env: env({ LOUPE_PROMPTS_DIR: prompts, LOUPE_DATA_DIR: dataDir, LOUPE_LLM_MODEL: "test-model" }),
      cwd: root,
      logger: quiet,
    }).then(
      async (loupe) => {
        await loupe.stop();
        throw new Error("start-up succeeded with a broken prompt");
      },
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ConfigError);
    const message = (failure as ConfigError).message;
    expect(message).toContain(path.join(prompts, "answer.v1.md"));
    expect(message).toContain('"history" is missing');
    expect(message).toContain("{{history}}");
    expect(await processesMentioning(dataDir)).toEqual([]);
  });

  it("a prompt with an undeclared placeholder stops start-up even without an LLM", async () => {
    const prompts = path.join(work, "undeclared-prompts");
    await mkdir(prompts);
    await copyFile(path.join(root, "prompts", "answer.v1.md"), path.join(prompts, "answer.v1.md"));
    const text = await readFile(path.join(root, "prompts", "answer.v1.md"), "utf8");
    await writeFile(
      path.join(prompts, "answer.v2.md"),
      text
        .replace("version: 1", "version: 2")
        .replace("Question: {{question}}", "Question: {{question}} {{tenant}}"),
    );
    const error = await openServices({
      env: env({ LOUPE_PROMPTS_DIR: prompts }),
      cwd: root,
      logger: quiet,
    }).then(
      async (opened: { close(): Promise<void> }) => {
        await opened.close();
        throw new Error("start-up succeeded with a broken prompt");
      },
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(path.join(prompts, "answer.v2.md"));
    expect((error as ConfigError).message).toContain("{{tenant}} is not declared");
  });

  it("builds the LLM composer from the configuration, talking to the configured endpoint", async () => {
    const opened = await openServices({
      env: env({
        LOUPE_LLM_MODEL: "local-vision",
        OPENAI_BASE_URL: llm.url,
        OPENAI_API_KEY: "sk-local-test",
        LOUPE_LLM_VISION: "true",
        LOUPE_LLM_MAX_TOKENS: "200",
        LOUPE_LLM_TEMPERATURE: "0.1",
      }),
      cwd: root,
      logger: quiet,
    });
    try {
      const composer = opened.llm;
      expect(composer).toMatchObject({ kind: "llm", model: "local-vision", vision: true });
      llm.reply({ text: "The circle is red [img_1]." });
      const evidence: Evidence = {
        citation: {
          id: "img_1",
          kind: "image",
          mediaUrl: null,
          thumbnailUrl: null,
          start: null,
          end: null,
          question: null,
          answer: null,
          score: 0.9,
        },
        attachment: false,
        text: "a red circle",
        findings: [],
      };
      const output = await composer?.compose(
        {
          question: "What colour is the circle?",
          standaloneQuestion: "What colour is the circle?",
          history: [],
          evidence: [evidence],
          images: [],
        },
        () => undefined,
      );
      expect(output?.text).toBe("The circle is red [img_1].");
      const request = llm.chatRequests.at(-1);
      expect(request?.authorization).toBe("valid");
      expect(request?.body).toMatchObject({ model: "local-vision", max_tokens: 200, temperature: 0.1 });
      expect(messageText(request?.body?.messages?.[1])).toContain("[img_1] · image · score 0.90");
    } finally {
      await opened.close();
    }
  });

  it("has no LLM composer without LOUPE_LLM_MODEL", async () => {
    const opened = await openServices({ env: env({}), cwd: root, logger: quiet });
    try {
      expect(opened.llm).toBeUndefined();
    } finally {
      await opened.close();
    }
  });
});
