/** `loupe models` (src/cli/commands/models.ts), run in-process through commander. */
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { registerModelsCommand } from "../../src/cli/commands/models.ts";
import { DownloadError, ModelPackError } from "../../src/errors.ts";

const fixtures = join(import.meta.dirname, "fixtures");

let scratch: string;
let output: string[];

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "loupe-models-cli-"));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

async function runModels(args: string[]): Promise<string> {
  output = [];
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    output.push(String(chunk));
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  const program = new Command("loupe").exitOverride();
  registerModelsCommand(program);
  await program.parseAsync(["node", "loupe", "models", ...args]);
  return output.join("");
}

describe("loupe models", () => {
  it("list prints each pack with id, dimension and capabilities", async () => {
    const text = await runModels(["list", "--models-dir", fixtures]);
    expect(text).toMatch(/tiny-pack\s+tiny-test@1\s+16\s+32px\s+image,text,vqa,video\(4 frames\)/);
    expect(text).toMatch(/tiny-clip-pack\s+tiny-clip-pack\s+16\s+32px\s+image,text,video\(mean\)/);
    const json = JSON.parse(await runModels(["list", "--models-dir", fixtures, "--json"])) as {
      dir: string;
    }[];
    expect(json.map((entry) => entry.dir)).toEqual(["tiny-clip-pack", "tiny-pack"]);
  });

  it("list says how to get a pack when there is none", async () => {
    const text = await runModels(["list", "--models-dir", join(scratch, "empty")]);
    expect(text).toMatch(/No models directory/);
  });

  it("verify checks every file and the model names", async () => {
    const text = await runModels(["verify", join(fixtures, "tiny-pack")]);
    expect(text).toContain("sha256 ok  onnx/meter_vqa.onnx");
    expect(text).toContain("io ok      onnx/video_model.onnx");
    expect(text).toContain("tiny-test@1: 9 files verified; dimension 16");
  });

  it("verify fails on a changed file, naming it", async () => {
    const dir = join(scratch, "changed");
    await cp(join(fixtures, "tiny-pack"), dir, { recursive: true });
    await writeFile(join(dir, "tokenizer_config.json"), "{}");
    await expect(runModels(["verify", dir])).rejects.toThrow(ModelPackError);
    await expect(runModels(["verify", dir])).rejects.toThrow(
      /tokenizer_config\.json does not match manifest\.json/,
    );
  });

  it("fetch fails fast and names the host when it cannot be reached", async () => {
    const probe = createServer();
    await new Promise<void>((resolveListen) => probe.listen(0, "127.0.0.1", resolveListen));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolveClose) => probe.close(resolveClose));
    const started = performance.now();
    const run = runModels([
      "fetch",
      "clip-vit-base-patch32",
      "--models-dir",
      join(scratch, "offline"),
      "--base-url",
      `http://127.0.0.1:${port}`,
    ]);
    await expect(run).rejects.toThrow(DownloadError);
    await expect(run).rejects.toThrow(
      new RegExp(`Could not reach 127\\.0\\.0\\.1:${port}.*appears to be offline`),
    );
    expect(performance.now() - started).toBeLessThan(2000);
  });
});
