/**
 * `loupe search` in-process: the command opens the configured store (an embedded Milvus Lite on a
 * temporary LOUPE_DATA_DIR) and the bundled pack, searches, and closes them.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { formatSearchTable, runSearch } from "../../src/cli/commands/search.ts";
import { createLogger } from "../../src/logger.ts";
import { createRng, describeScene, renderScene, sampleScene } from "../../src/synth/index.ts";
import { openTestServices } from "../helpers/app.ts";

const root = path.join(import.meta.dirname, "..", "..");

describe("loupe search in-process", () => {
  let dir: string;
  let env: Record<string, string>;
  const ids: string[] = [];
  const descriptions: string[] = [];
  let firstImage: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-search-int-"));
    env = {
      LOUPE_DATA_DIR: dir,
      LOUPE_MODEL_PACK: path.join(root, "models", "shapes-world-tiny"),
      LOUPE_VENV_DIR: path.join(root, ".venv"),
      LOUPE_LOG_LEVEL: "silent",
    };
    // Indexed through the API of an in-process Loupe, which is then closed so the command can take the
    // data dir's lock.
    const opened = await openTestServices({ env, logger: createLogger({ level: "silent" }) });
    try {
      const app = createApp(opened);
      const rng = createRng(5);
      const form = new FormData();
      for (let index = 0; index < 6; index += 1) {
        const scene = sampleScene(rng);
        descriptions.push(describeScene(scene, rng, { includeSizes: true }).text);
        const { data } = await renderScene(scene, { size: 128, format: "png", seed: index });
        if (index === 0) {
          firstImage = path.join(dir, "first.png");
          await writeFile(firstImage, data);
        }
        form.append("files", new Blob([new Uint8Array(data)], { type: "image/png" }), `${index}.png`);
        form.append("metadata", JSON.stringify({ tags: [`scene${index}`] }));
      }
      const response = await app.request("/v1/images", { method: "POST", body: form });
      expect(response.status).toBe(200);
      for (const item of ((await response.json()) as { items: { id: string }[] }).items) ids.push(item.id);
    } finally {
      await opened.close();
    }
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("finds an image by its description and by its file, and prints the table", async () => {
    const byText = await runSearch({ env, text: descriptions[2], kinds: ["image"], topK: 3 });
    expect(byText.map((item) => item.id)).toContain(ids[2]);
    const byImage = await runSearch({ env, imagePath: firstImage, kinds: ["image"], topK: 1 });
    expect(byImage[0]?.id).toBe(ids[0]);
    expect(formatSearchTable(byImage)).toMatch(
      new RegExp(`^1\\s+${ids[0]}\\s+image\\s+1\\.0000\\s+scene0$`, "m"),
    );
  }, 120_000);

  it("searches the tenant it is given, and only that one", async () => {
    expect(await runSearch({ env, tenant: "someone_else", text: descriptions[0] })).toEqual([]);
  }, 120_000);
});
