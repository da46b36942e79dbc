/**
 * `loupe feedback proposals|approve|reject` end to end: bin/loupe.js in a child process on a data dir
 * where feedback proposed two triples. Listing and rejecting work on the files alone; approving starts
 * the embedded Milvus Lite and the pack in the command's process and stores the triple, found afterwards
 * by search.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Proposal } from "../../src/feedback/feedback-store.ts";
import { openTestServices } from "../helpers/app.ts";
import { renderShapes } from "../ingest/harness.ts";

const run = promisify(execFile);
const root = path.join(import.meta.dirname, "..", "..");

async function loupe(args: string[], env: Record<string, string>) {
  try {
    const { stdout, stderr } = await run(process.execPath, ["bin/loupe.js", ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("loupe feedback", () => {
  let dir: string;
  let env: Record<string, string>;
  const ids: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-feedback-int-"));
    env = {
      LOUPE_DATA_DIR: dir,
      LOUPE_MODEL_PACK: path.join(root, "models", "shapes-world-tiny"),
      LOUPE_VENV_DIR: path.join(root, ".venv"),
      LOUPE_LOG_LEVEL: "silent",
      LOUPE_BLOB_GC_AT_START: "off",
    };
    const images = await renderShapes({ count: 2, seed: 41, format: "png" });
    const services = await openTestServices({ env });
    try {
      for (const [index, image] of images.entries()) {
        const receipt = await services.feedback.submit({
          tenant: "default",
          keyId: null,
          requestId: null,
          input: {
            rating: "up",
            question: `Which colour is shape number ${index}?`,
            answer: `Shape ${index} is quokka-orange [att_1].`,
            citations: ["att_1"],
            image: { bytes: new Uint8Array(image) },
          },
        });
        ids.push(receipt.proposal?.id as string);
      }
    } finally {
      await services.close();
    }
  }, 180_000);

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("lists, rejects and approves, and the approved triple is searchable", async () => {
    const listed = await loupe(["feedback", "proposals", "--json"], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as Proposal[]).map((proposal) => proposal.id).sort()).toEqual(
      [...ids].sort(),
    );
    const table = await loupe(["feedback", "proposals"], env);
    expect(table.stdout).toContain("Shape 0 is quokka-orange.");

    const rejected = await loupe(["feedback", "reject", ids[1] as string], env);
    expect(rejected.code, rejected.stderr).toBe(0);
    expect(rejected.stdout).toContain(`Rejected ${ids[1]}`);

    const approved = await loupe(["feedback", "approve", ids[0] as string, "--json"], env);
    expect(approved.code, approved.stderr).toBe(0);
    const { proposal } = JSON.parse(approved.stdout) as { proposal: Proposal };
    expect(proposal.status).toBe("approved");
    expect(proposal.tripleId).toMatch(/^tri_/);

    const unknown = await loupe(["feedback", "reject", `fbp_${"0".repeat(32)}`], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("No proposal");
    const all = JSON.parse((await loupe(["feedback", "proposals", "--status", "all", "--json"], env)).stdout);
    expect((all as Proposal[]).map((entry) => [entry.id, entry.status]).sort()).toEqual(
      [
        [ids[0], "approved"],
        [ids[1], "rejected"],
      ].sort(),
    );
    const audit = await readFile(path.join(dir, "audit.log"), "utf8");
    expect(audit).toContain('"action":"proposal.approve"');
    expect(audit).toContain('"action":"proposal.reject"');

    const services = await openTestServices({ env });
    try {
      const found = await services.search.search({
        tenant: "default",
        text: "quokka-orange",
        mode: "text",
        kinds: ["triple"],
        topK: 5,
      });
      expect(found.items.map((item) => item.id)).toEqual([proposal.tripleId]);
    } finally {
      await services.close();
    }
  }, 300_000);
});
