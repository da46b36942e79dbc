import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = path.join(import.meta.dirname, "..", "..");

/** Runs bin/loupe.js as a user would, returning its exit code and output. */
async function loupe(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, ["bin/loupe.js", ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("loupe command", () => {
  it("lists its subcommands", async () => {
    const { code, stdout } = await loupe(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: loupe");
    expect(stdout).toMatch(/serve( \[options\])?\s+serve the HTTP API/);
  });

  it("rejects an unknown subcommand with exit code 1", async () => {
    const { code, stderr } = await loupe(["frobnicate"]);
    expect(code).toBe(1);
    expect(stderr).toContain("unknown command 'frobnicate'");
  });

  it("serve stops at start-up on bad settings, naming each variable, and starts nothing", async () => {
    const { code, stdout, stderr } = await loupe(["serve"], { PORT: "eighty", LOUPE_METRIC: "L2" });
    expect(code).toBe(1);
    expect(stderr).toContain('PORT="eighty" is not allowed; expected integer 0–65535');
    expect(stderr).toContain('LOUPE_METRIC="L2" is not allowed; expected `COSINE` or `IP`');
    expect(stderr).not.toContain("    at ");
    expect(stdout).toBe("");
  });
});
