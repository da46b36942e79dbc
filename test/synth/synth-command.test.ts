import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, describe, expect, it, vi } from "vitest";
import { registerSynthCommand } from "../../src/cli/commands/synth.ts";
import { ValidationError } from "../../src/errors.ts";

const root = mkdtempSync(join(tmpdir(), "loupe-synth-cli-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function program(): Command {
  const loupe = new Command("loupe").exitOverride().configureOutput({ writeErr: () => undefined });
  registerSynthCommand(loupe);
  return loupe;
}

async function run(...args: string[]): Promise<string> {
  let out = "";
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    out += String(chunk);
    return true;
  });
  try {
    await program().parseAsync(["synth", ...args], { from: "user" });
  } finally {
    write.mockRestore();
  }
  return out;
}

describe("loupe synth", () => {
  it("writes a dataset and reports what it wrote", async () => {
    const out = join(root, "ok");
    const report = await run(
      "--out",
      out,
      "--images",
      "3",
      "--size",
      "64",
      "--format",
      "webp",
      "--seed",
      "4",
      "--quiet",
    );
    expect(report).toMatch(/images 3 .* images\/s/);
    const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
    expect(manifest.options).toMatchObject({ seed: 4, images: 3, size: 64, format: "webp" });
  });

  it("names the flag and the allowed range in errors", async () => {
    await expect(run("--out", join(root, "x"), "--size", "2000")).rejects.toThrow(
      /--size: .*1024.*\(got 2000\)/,
    );
    await expect(run("--out", join(root, "x"), "--clips-per-video", "9", "--videos", "1")).rejects.toThrow(
      /--clips-per-video/,
    );
    await expect(
      run("--out", join(root, "x"), "--size", "66", "--video-size", "99", "--videos", "1"),
    ).rejects.toThrow(ValidationError);
    await expect(run("--out", join(root, "x"), "--images", "ten")).rejects.toThrow(
      /--images takes a whole number/,
    );
    await expect(run("--out", join(root, "x"), "--format", "gif")).rejects.toThrow(/png, jpeg, webp/);
    await expect(run("--images", "1")).rejects.toThrow(/--out/);
  });
});
