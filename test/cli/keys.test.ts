/**
 * `loupe keys` as a user runs it (bin/loupe.js, the compiled CLI, in a child process) on a temporary
 * data dir: create, list and revoke, their JSON forms, the audit trail, what the files hold, and the
 * messages for what is refused. That a running server sees these changes is tested in
 * test/security/tenant-isolation.int.test.ts.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileKeyStore, KEYS_FILE, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";

const run = promisify(execFile);
const root = path.join(import.meta.dirname, "..", "..");

let dataDir: string;

/** Runs `loupe keys …` on the test's data dir. */
async function loupeKeys(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, ["bin/loupe.js", "keys", ...args], {
      cwd: root,
      env: { ...process.env, LOUPE_DATA_DIR: dataDir, LOUPE_LOG_LEVEL: "silent", ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function auditLines(): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path.join(dataDir, "audit.log"), "utf8");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

interface KeyJson {
  id: string;
  key?: string;
  tenant: string;
  scopes: string[];
  status: string;
  name: string | null;
  publishable: boolean;
  origins: string[];
  expiresAt: string | null;
  rateLimit: { perSecond: number; burst: number } | null;
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-keys-"));
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe("loupe keys", () => {
  let made: KeyJson;

  it("create --json prints one object with the key, stores only its HMAC (0600) and audits the change", async () => {
    const { code, stdout, stderr } = await loupeKeys([
      "create",
      "--tenant",
      "acme",
      "--scopes",
      "read,ingest",
      "--name",
      "ci",
      "--expires",
      "30d",
      "--rate-limit",
      "10/40",
      "--json",
    ]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout.trim().split("\n")).toHaveLength(1);
    made = JSON.parse(stdout) as KeyJson;
    expect(made).toMatchObject({
      tenant: "acme",
      scopes: ["read", "ingest"],
      name: "ci",
      status: "active",
      publishable: false,
      rateLimit: { perSecond: 10, burst: 40 },
    });
    expect(made.id).toMatch(/^key_[0-9a-f]{16}$/);
    expect(made.key).toMatch(/^loupe_sk_[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(made.expiresAt as string) - Date.now()).toBeGreaterThan(29 * 86_400_000);

    const file = path.join(keyStoreDir(dataDir), KEYS_FILE);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, "utf8")).not.toContain(made.key as string);
    const store = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
    expect((await store.verify(made.key as string)).status).toBe("valid");
    await store.close();

    const [entry] = await auditLines();
    expect(entry).toMatchObject({
      action: "key.create",
      keyId: null,
      tenant: "acme",
      route: "cli keys create",
      requestId: null,
      itemIds: [made.id],
    });
    expect((await stat(path.join(dataDir, "audit.log"))).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(dataDir, "audit.log"), "utf8")).not.toContain(made.key as string);
  });

  it("create prints the key once with what it may do; publishable keys carry their origins", async () => {
    const { code, stdout } = await loupeKeys([
      "create",
      "--tenant",
      "acme",
      "--publishable",
      "--origins",
      "https://app.example.com,http://localhost:3000",
    ]);
    expect(code).toBe(0);
    const key = /loupe_pk_[A-Za-z0-9_-]{43}/.exec(stdout)?.[0] as string;
    expect(key).toBeDefined();
    expect(stdout.split(key)).toHaveLength(2);
    expect(stdout).toContain("publishable key");
    expect(stdout).toContain("for tenant acme: read");
    expect(stdout).toContain("https://app.example.com, http://localhost:3000");
    expect(stdout).toContain("shown only now");
  });

  it("list shows the keys, never the keys themselves", async () => {
    const table = await loupeKeys(["list"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+NAME\s+TENANT\s+SCOPES\s+STATUS/);
    expect(table.stdout).toContain(made.id);
    expect(table.stdout).toContain("read,ingest");
    expect(table.stdout).toContain("read (publishable)");
    expect(table.stdout).not.toContain(made.key as string);
    const listed = await loupeKeys(["list", "--json"]);
    const keys = JSON.parse(listed.stdout) as Array<KeyJson & { hash?: string }>;
    expect(keys).toHaveLength(2);
    expect(keys.every((key) => key.key === undefined && key.hash === undefined)).toBe(true);
    expect((await loupeKeys(["list", "--tenant", "nobody", "--json"])).stdout.trim()).toBe("[]");
  });

  it("revoke revokes by id and audits it; an unknown id fails naming it", async () => {
    const { code, stdout } = await loupeKeys(["revoke", made.id]);
    expect(code).toBe(0);
    expect(stdout).toContain(`Revoked ${made.id} (tenant acme)`);
    const listed = JSON.parse((await loupeKeys(["list", "--json"])).stdout) as KeyJson[];
    expect(listed.find((key) => key.id === made.id)?.status).toBe("revoked");
    const store = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
    expect((await store.verify(made.key as string)).status).toBe("revoked");
    await store.close();
    expect((await auditLines()).at(-1)).toMatchObject({
      action: "key.revoke",
      keyId: null,
      tenant: "acme",
      route: "cli keys revoke",
      itemIds: [made.id],
    });

    const unknown = await loupeKeys(["revoke", "key_0000000000000000"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No key with id "key_0000000000000000"');
    expect(unknown.stderr).not.toContain("    at ");
  });

  it("refuses what a key cannot be, saying what is allowed", async () => {
    const cases: Array<[string[], string]> = [
      [["create", "--tenant", "acme"], "--scopes is required"],
      [["create", "--tenant", "acme", "--scopes", "read,root"], '"root" are not scopes'],
      [["create", "--tenant", 'a" or "1"="1', "--scopes", "read"], "tenant"],
      [["create", "--tenant", "acme", "--scopes", "read", "--expires", "soon"], "--expires"],
      [["create", "--tenant", "acme", "--publishable"], "needs the origins"],
      [
        ["create", "--tenant", "acme", "--scopes", "read", "--origins", "https://a.example/x"],
        "is not an origin",
      ],
      [["create", "--tenant", "acme", "--scopes", "read", "--rate-limit", "fast"], "--rate-limit"],
      [["create", "--scopes", "read"], "--tenant"],
    ];
    for (const [args, text] of cases) {
      const { code, stderr, stdout } = await loupeKeys(args);
      expect(code, args.join(" ")).toBe(1);
      expect(stderr, args.join(" ")).toContain(text);
      expect(stdout).not.toMatch(/loupe_[sp]k_/);
    }
  }, 120_000);

  it("uses LOUPE_KEY_SECRET when set", async () => {
    const secretDir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-keys-secret-"));
    try {
      const secret = "k".repeat(48);
      const { code, stdout } = await run(
        process.execPath,
        ["bin/loupe.js", "keys", "create", "--tenant", "acme", "--scopes", "read", "--json"],
        { cwd: root, env: { ...process.env, LOUPE_DATA_DIR: secretDir, LOUPE_KEY_SECRET: secret } },
      ).then((result) => ({ code: 0, ...result }));
      expect(code).toBe(0);
      const { key } = JSON.parse(stdout) as { key: string };
      const withSecret = createFileKeyStore({
        dir: keyStoreDir(secretDir),
        secret,
        tenantPattern: TENANT_PATTERN,
      });
      expect((await withSecret.verify(key)).status).toBe("valid");
      await withSecret.close();
      await expect(stat(path.join(keyStoreDir(secretDir), "secret"))).rejects.toThrow();
    } finally {
      await rm(secretDir, { recursive: true, force: true });
    }
  });
});
