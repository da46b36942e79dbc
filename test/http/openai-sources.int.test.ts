/**
 * Loupe as chat UIs use it, over real HTTP against a real Loupe (embedded Milvus Lite, the bundled model
 * pack) holding generated Shapes World images and one video, its LLM a local OpenAI-compatible test
 * server, talked to with the official `openai` client: answers about an attached image carry
 * `url_citation` annotations (on the message, and on the stop chunk of a stream) whose absolute URLs
 * fetch the cited media with its content type (a video segment: the video, at its start time); a request
 * with what chat UIs add (`user`, `cache_control`, `metadata`, Open WebUI's headers) and
 * `stream_options.include_usage` streams a usage chunk; a `file` part is refused with a message naming
 * what is supported; the Sources list links work too, and so do those of the Responses API. Then an API key is made, turning authentication
 * on: the links are signed, open in a "browser" that sends no key, and stop opening when altered.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileKeyStore, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { SOURCES_HEADING } from "../../src/http/chat-sources.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { generateDataset, readJsonl } from "../../src/synth/index.ts";
import { messageText, type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";

const root = path.join(import.meta.dirname, "..", "..");
const LLM_MODEL = "test-llm";

interface SceneLine {
  id: string;
  file: string;
}

type Annotation = OpenAI.ChatCompletionMessage.Annotation;

/** The text of `content` an annotation spans (its indices count code points). */
function spanned(content: string, annotation: Annotation): string {
  return Array.from(content)
    .slice(annotation.url_citation.start_index, annotation.url_citation.end_index)
    .join("");
}

/** Fetches a link as a browser following it would: no key, the fragment left behind. */
async function open(url: string): Promise<{ status: number; type: string | null; bytes: Buffer }> {
  const response = await fetch(url, { redirect: "manual" });
  return {
    status: response.status,
    type: response.headers.get("content-type"),
    bytes: Buffer.from(await response.arrayBuffer()),
  };
}

describe("OpenAI chat completions as chat UIs use them, on a running Loupe", () => {
  let workDir: string;
  let dataDir: string;
  let loupe: RunningLoupe;
  let llm: OpenAiTestServer;
  let client: OpenAI;
  /** Stored image id → the bytes that were uploaded. */
  const uploaded = new Map<string, Buffer>();
  let firstImage: string;
  let videoBytes: Buffer;
  let dataUrl: string;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-openai-sources-"));
    dataDir = path.join(workDir, "data");
    const dataset = path.join(workDir, "synth");
    await generateDataset({
      outDir: dataset,
      seed: 4242,
      images: 6,
      size: 128,
      format: "png",
      questionsPerType: 1,
      triples: 0,
    });
    llm = await startOpenAiTestServer({ models: [LLM_MODEL] });
    // The LLM cites the first stored item of the evidence Loupe sent it, as a model would.
    llm.setDefault((request) => {
      const prompt = (request.body?.messages ?? []).map((message) => messageText(message)).join("\n");
      const cited = /\b(?:seg|img)_[0-9a-f]{32}\b/.exec(prompt)?.[0] ?? "att_1";
      return { deltas: ["It is shown ", `in [${cited}].`] };
    });
    loupe = await startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: dataDir,
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_LLM_MODEL: LLM_MODEL,
        OPENAI_BASE_URL: llm.url,
        OPENAI_API_KEY: "test-key",
        LOUPE_LLM_MAX_RETRIES: "0",
        LOUPE_OCR: "off",
      },
      cwd: root,
      logger: createLogger({ level: "silent" }),
    });

    const scenes = await readJsonl<SceneLine>(path.join(dataset, "scenes.jsonl"));
    const form = new FormData();
    const files: Buffer[] = [];
    for (const scene of scenes) {
      const bytes = await readFile(path.join(dataset, scene.file));
      files.push(bytes);
      form.append("files", new File([new Uint8Array(bytes)], `${scene.id}.png`, { type: "image/png" }));
    }
    const ingested = await fetch(`${loupe.url}/v1/images`, { method: "POST", body: form });
    const body = (await ingested.json()) as { items: Array<{ id: string }> };
    expect(ingested.status, JSON.stringify(body).slice(0, 300)).toBe(200);
    for (const [index, item] of body.items.entries()) uploaded.set(item.id, files[index] as Buffer);
    firstImage = body.items[0]?.id ?? "";
    dataUrl = `data:image/png;base64,${(files[0] as Buffer).toString("base64")}`;

    const videoFile = await makeTestVideo({
      outPath: path.join(workDir, "clip.mp4"),
      source: "testsrc=size=160x120:rate=8:duration=4",
    });
    videoBytes = await readFile(videoFile);
    const videoForm = new FormData();
    videoForm.append("file", new File([new Uint8Array(videoBytes)], "clip.mp4", { type: "video/mp4" }));
    const video = await fetch(`${loupe.url}/v1/videos`, { method: "POST", body: videoForm });
    expect(video.status, (await video.clone().text()).slice(0, 300)).toBe(200);

    client = new OpenAI({ apiKey: "unused", baseURL: `${loupe.url}/v1`, maxRetries: 0 });
  }, 300_000);

  afterAll(async () => {
    await loupe?.stop();
    await llm?.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  /** Checks that every annotation is a url_citation spanning its [id] and opening the cited image. */
  async function expectImageLinks(content: string, annotations: Annotation[] | undefined): Promise<void> {
    expect(annotations?.length ?? 0).toBeGreaterThan(0);
    for (const annotation of annotations ?? []) {
      expect(annotation.type).toBe("url_citation");
      const { url, title } = annotation.url_citation;
      const id = /img_[0-9a-f]{32}/.exec(url)?.[0] ?? "";
      expect(url.startsWith(`${loupe.url}/v1/media/${id}`)).toBe(true);
      expect(title).toBe(`Image ${id}`);
      expect(spanned(content, annotation)).toBe(`[${id}]`);
      const opened = await open(url);
      expect(opened.status).toBe(200);
      expect(opened.type).toBe("image/png");
      expect(opened.bytes.equals(uploaded.get(id) as Buffer)).toBe(true);
    }
  }

  const aboutStoredImage = (): OpenAI.ChatCompletionMessageParam[] => [
    {
      role: "user",
      content: [
        { type: "text", text: "What color is the largest shape in this image?" },
        { type: "image_url", image_url: { url: firstImage } },
      ],
    },
  ];

  it("a completion about an attached image carries url_citation annotations that open the cited images", async () => {
    const completion = await client.chat.completions.create({
      model: "loupe-offline",
      messages: aboutStoredImage(),
    });
    const message = completion.choices[0]?.message;
    expect(message?.content).toContain(`[${firstImage}]`);
    await expectImageLinks(message?.content ?? "", message?.annotations);
  });

  it("a stream with what chat UIs send (user, cache_control, metadata, include_usage) ends with annotations and a usage chunk", async () => {
    const body = {
      model: "loupe",
      stream: true,
      stream_options: { include_usage: true },
      user: "open-webui-user-7",
      seed: 1,
      metadata: { chat: "c-1" },
      messages: [
        { role: "system", content: "Be brief.", cache_control: { type: "ephemeral" } },
        {
          role: "user",
          content: [
            { type: "text", text: "Which clip looks like this?", cache_control: { type: "ephemeral" } },
            { type: "image_url", image_url: { url: dataUrl } },
          ],
        },
      ],
      loupe: { kinds: ["video_segment"] },
    } as unknown as OpenAI.ChatCompletionCreateParamsStreaming;
    const stream = await client.chat.completions.create(body, {
      headers: { "X-OpenWebUI-User-Id": "u-7", "X-OpenWebUI-Chat-Id": "chat-9" },
    });
    let content = "";
    let annotations: Annotation[] | undefined;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let usageChoices: number | undefined;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? "";
      const delta = chunk.choices[0]?.delta as { annotations?: Annotation[] } | undefined;
      if (delta?.annotations !== undefined) annotations = delta.annotations;
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) {
        usage = chunk.usage;
        usageChoices = chunk.choices.length;
      }
    }
    expect(finish).toBe("stop");
    expect(usageChoices).toBe(0);
    expect(usage?.total_tokens).toBe((usage?.prompt_tokens ?? 0) + (usage?.completion_tokens ?? 0));
    expect(usage?.total_tokens).toBeGreaterThan(0);
    const segment = /\[(seg_[0-9a-f]{32})\]/.exec(content)?.[1];
    expect(segment, content).toBeDefined();
    expect(annotations).toHaveLength(1);
    const annotation = annotations?.[0] as Annotation;
    expect(spanned(content, annotation)).toBe(`[${segment}]`);
    const url = new URL(annotation.url_citation.url);
    expect(url.pathname).toBe(`/v1/media/${segment}`);
    expect(url.hash).toMatch(/^#t=\d+(\.\d+)?,\d+(\.\d+)?$/);
    expect(annotation.url_citation.title).toMatch(
      new RegExp(`^Video segment ${segment}, \\d+:\\d\\d–\\d+:\\d\\d$`),
    );
    const opened = await open(annotation.url_citation.url);
    expect(opened.status).toBe(200);
    expect(opened.type).toBe("video/mp4");
    expect(opened.bytes.equals(videoBytes)).toBe(true);
  });

  it("a file part is refused with a message naming what is supported", async () => {
    const refused = client.chat.completions.create({
      model: "loupe",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Summarize the attached file." },
            { type: "file", file: { file_data: "data:application/pdf;base64,JVBERi0=", filename: "a.pdf" } },
          ],
        },
      ],
    });
    await expect(refused).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(refused).rejects.toThrow(
      /content part type "file" is not supported; use "text" or "image_url".*Loupe reads no files/,
    );
  });

  it("loupe.sources markdown appends a Sources list whose links open the images", async () => {
    const completion = await client.chat.completions.create({
      model: "loupe-offline",
      messages: aboutStoredImage(),
      loupe: { sources: "markdown" },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const content = completion.choices[0]?.message.content ?? "";
    const list = content.slice(content.indexOf(`\n\n${SOURCES_HEADING}\n\n`));
    const links = [...list.matchAll(/^\d+\. \[Image (img_[0-9a-f]{32})\]\((\S+)\)$/gm)];
    expect(links.length).toBeGreaterThan(0);
    for (const [, id, url] of links) {
      const opened = await open(url as string);
      expect(opened.status).toBe(200);
      expect(opened.bytes.equals(uploaded.get(id as string) as Buffer)).toBe(true);
    }
    await expectImageLinks(content, completion.choices[0]?.message.annotations);
  });

  it("the Responses API answers with url_citation annotations that open the cited images, streamed and not", async () => {
    const input: OpenAI.Responses.ResponseInput = [
      {
        role: "user",
        content: [
          { type: "input_text", text: "What color is the largest shape in this image?" },
          { type: "input_image", image_url: firstImage, detail: "auto" },
        ],
      },
    ];
    const response = await client.responses.create({ model: "loupe-offline", input });
    const part = (response.output[0] as OpenAI.Responses.ResponseOutputMessage)
      .content[0] as OpenAI.Responses.ResponseOutputText;
    expect(response.output_text).toBe(part.text);
    const asChat = (annotation: OpenAI.Responses.ResponseOutputText.URLCitation): Annotation => ({
      type: "url_citation",
      url_citation: {
        url: annotation.url,
        title: annotation.title,
        start_index: annotation.start_index,
        end_index: annotation.end_index,
      },
    });
    const citations = part.annotations.filter((annotation) => annotation.type === "url_citation");
    await expectImageLinks(part.text, citations.map(asChat));

    const stream = await client.responses.create({ model: "loupe-offline", input, stream: true });
    let streamed = "";
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") streamed += event.delta;
      if (event.type === "response.completed") completed = event.response;
    }
    expect(streamed).toBe(part.text);
    const streamedMessage = completed?.output[0] as OpenAI.Responses.ResponseOutputMessage | undefined;
    const streamedPart = streamedMessage?.content[0] as OpenAI.Responses.ResponseOutputText;
    const streamedCitations = streamedPart.annotations.filter(
      (annotation) => annotation.type === "url_citation",
    );
    await expectImageLinks(streamed, streamedCitations.map(asChat));
  });

  describe("with API keys on", () => {
    let keyed: OpenAI;

    beforeAll(async () => {
      const keys = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
      const created = await keys.create({ tenant: "default", scopes: ["read"], name: "chat ui" });
      await keys.close();
      // The server sees a new key within its key store's refresh interval.
      const deadline = Date.now() + 10_000;
      while ((await fetch(`${loupe.url}/v1/models`)).status !== 401 && Date.now() < deadline)
        await sleep(100);
      expect((await fetch(`${loupe.url}/v1/media/${firstImage}`)).status).toBe(401);
      keyed = new OpenAI({ apiKey: created.key, baseURL: `${loupe.url}/v1`, maxRetries: 0 });
    });

    it("a completion's links are signed and open without the key; altered or unsigned, they do not", async () => {
      const completion = await keyed.chat.completions.create({
        model: "loupe-offline",
        messages: aboutStoredImage(),
      });
      const message = completion.choices[0]?.message;
      await expectImageLinks(message?.content ?? "", message?.annotations);
      const url = new URL(message?.annotations?.[0]?.url_citation.url ?? "");
      expect([...url.searchParams.keys()]).toEqual(["exp", "kid", "sig"]);
      const unsigned = await fetch(`${url.origin}${url.pathname}`);
      expect(unsigned.status).toBe(401);
      const altered = new URL(url);
      altered.searchParams.set("exp", String(Number(url.searchParams.get("exp")) - 1));
      const refused = await fetch(altered);
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("invalid_media_link");
    });

    it("a streamed answer's signed video link opens the video", async () => {
      const stream = await keyed.chat.completions.create({
        model: "loupe",
        stream: true,
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "Which clip looks like this?" },
              { type: "image_url", image_url: { url: dataUrl } },
            ],
          },
        ],
        loupe: { kinds: ["video_segment"] },
      } as OpenAI.ChatCompletionCreateParamsStreaming);
      let annotations: Annotation[] | undefined;
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta as { annotations?: Annotation[] } | undefined;
        if (delta?.annotations !== undefined) annotations = delta.annotations;
      }
      const url = annotations?.[0]?.url_citation.url ?? "";
      expect(new URL(url).searchParams.get("sig")).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const opened = await open(url);
      expect(opened.status).toBe(200);
      expect(opened.type).toBe("video/mp4");
    });
  });
});
