/**
 * Test helper: a real Loupe (embedded Milvus Lite, the bundled model pack) for the browser tests, over a
 * generated corpus: a few Shapes World images, one rendered screenshot with text and one short video of
 * several segments. Its LLM is a local OpenAI-compatible test server that cites, as a model would, a
 * stored image and a video segment of the evidence Loupe sent it (the segment that starts last, so a
 * player seeking to it is not simply at 0). Started keyless on loopback; {@link UiLoupe.createPublishableKey}
 * turns keys on.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createFileKeyStore, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { generateDataset, readJsonl } from "../../src/synth/index.ts";
import { messageText, type OpenAiTestServer, startOpenAiTestServer } from "./openai-server.ts";
import { renderTextImage, stackLines } from "./text-images.ts";
import { makeTestVideo } from "./video-fixtures.ts";

const root = path.join(import.meta.dirname, "..", "..");

/** Model name the LLM test server answers as. */
export const UI_LLM_MODEL = "test-llm";

/** A stored video segment. */
export interface StoredSegment {
  id: string;
  startS: number;
  endS: number;
}

/** A running Loupe with its corpus. */
export interface UiLoupe {
  loupe: RunningLoupe;
  llm: OpenAiTestServer;
  /** Loupe's origin, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** Stored Shapes World image ids. */
  images: string[];
  /** Id of the stored screenshot with text. */
  screenshot: string;
  /** The screenshot's PNG bytes (also what a test pastes). */
  screenshotBytes: Buffer;
  /** The video's segments, in order. */
  segments: StoredSegment[];
  /** The segment the LLM cites whenever it is in the evidence. */
  citedSegment: StoredSegment;
  /**
   * Creates a publishable key for `origins` and waits until the server requires keys. Returns the key.
   */
  createPublishableKey(origins: readonly string[]): Promise<string>;
  stop(): Promise<void>;
}

/** Starts Loupe over a freshly generated corpus (about 20–40 s on a small machine). */
export async function startUiLoupe(): Promise<UiLoupe> {
  const workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-browser-"));
  const dataDir = path.join(workDir, "data");
  let llm: OpenAiTestServer | undefined;
  let loupe: RunningLoupe | undefined;
  try {
    const dataset = path.join(workDir, "synth");
    await generateDataset({
      outDir: dataset,
      seed: 1717,
      images: 4,
      size: 128,
      format: "png",
      questionsPerType: 1,
      triples: 0,
    });
    const screenshot = await renderTextImage({
      width: 480,
      height: 200,
      lines: stackLines({ texts: ["Payment failed", "Error code E-4012", "Retry in 30 seconds"], size: 22 }),
    });
    const videoFile = await makeTestVideo({
      outPath: path.join(workDir, "clip.mp4"),
      source: "testsrc=size=160x120:rate=8:duration=6",
    });

    let cited: StoredSegment | undefined;
    const started = await startOpenAiTestServer({ models: [UI_LLM_MODEL] });
    llm = started;
    llm.setDefault((request) => {
      const prompt = (request.body?.messages ?? []).map((message) => messageText(message)).join("\n");
      const image = /\bimg_[0-9a-f]{32}\b/.exec(prompt)?.[0];
      const segment =
        cited !== undefined && prompt.includes(cited.id)
          ? cited.id
          : /\bseg_[0-9a-f]{32}\b/.exec(prompt)?.[0];
      const sources = [image, segment].filter((id) => id !== undefined).map((id) => `[${id}]`);
      if (sources.length === 0) return { deltas: ["It is shown ", "in [att_1]."] };
      return { deltas: ["It is shown ", `in ${sources.join(" and ")}.`], deltaDelayMs: 20 };
    });
    loupe = await startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: dataDir,
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_LLM_MODEL: UI_LLM_MODEL,
        OPENAI_BASE_URL: llm.url,
        OPENAI_API_KEY: "test-key",
        LOUPE_LLM_MAX_RETRIES: "0",
        // Reading text is not under test here and would slow every ingest down.
        LOUPE_OCR: "off",
      },
      cwd: root,
      logger: createLogger({ level: "silent" }),
    });
    const url = loupe.url;

    const scenes = await readJsonl<{ id: string; file: string }>(path.join(dataset, "scenes.jsonl"));
    const form = new FormData();
    for (const scene of scenes) {
      const bytes = await readFile(path.join(dataset, scene.file));
      form.append("files", new File([new Uint8Array(bytes)], `${scene.id}.png`, { type: "image/png" }));
    }
    form.append(
      "files",
      new File([new Uint8Array(screenshot.bytes)], "checkout-error.png", { type: "image/png" }),
    );
    const ingested = await fetch(`${url}/v1/images`, { method: "POST", body: form });
    const imageBody = (await ingested.json()) as { items?: Array<{ id: string }> };
    if (ingested.status !== 200 || imageBody.items?.length !== scenes.length + 1)
      throw new Error(`image ingest failed (${ingested.status}): ${JSON.stringify(imageBody).slice(0, 300)}`);
    const ids = imageBody.items.map((item) => item.id);

    const videoForm = new FormData();
    videoForm.append(
      "file",
      new File([new Uint8Array(await readFile(videoFile))], "clip.mp4", { type: "video/mp4" }),
    );
    const video = await fetch(`${url}/v1/videos`, { method: "POST", body: videoForm });
    const videoBody = (await video.json()) as { items?: Array<{ segments?: StoredSegment[] }> };
    const segments = videoBody.items?.[0]?.segments ?? [];
    if (video.status !== 200 || segments.length < 2)
      throw new Error(`video ingest failed (${video.status}): ${JSON.stringify(videoBody).slice(0, 300)}`);
    cited = segments.reduce((latest, segment) => (segment.startS > latest.startS ? segment : latest));

    const running = loupe;
    const server = llm;
    return {
      loupe: running,
      llm: server,
      url,
      images: ids.slice(0, -1),
      screenshot: ids.at(-1) as string,
      screenshotBytes: screenshot.bytes,
      segments,
      citedSegment: cited,
      async createPublishableKey(origins) {
        const keys = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
        const created = await keys.create({ tenant: "default", publishable: true, origins, name: "widget" });
        await keys.close();
        // The server sees a new key within its key store's refresh interval.
        const deadline = Date.now() + 15_000;
        while ((await fetch(`${url}/v1/models`)).status !== 401) {
          if (Date.now() > deadline) throw new Error("the server did not turn keys on within 15 s");
          await sleep(100);
        }
        return created.key;
      },
      async stop() {
        await running.stop();
        await server.close();
        await rm(workDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await loupe?.stop();
    await llm?.close();
    await rm(workDir, { recursive: true, force: true });
    throw error;
  }
}
