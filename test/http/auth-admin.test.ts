/**
 * Key management over HTTP (`/v1/admin/keys`): admin keys make, list and revoke keys of their own
 * tenant only; each change is in the audit trail with the acting key's id and never the key; a key
 * made here works at once and a key revoked here is refused at once.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type AuthTestApp, bearer, errorOf, makeAuthTestApp } from "./auth-fixtures.ts";

let current: AuthTestApp | undefined;

afterEach(async () => {
  await current?.dispose();
  current = undefined;
});

const post = (body: unknown, key: string) => ({
  method: "POST",
  headers: bearer(key, { "content-type": "application/json" }),
  body: JSON.stringify(body),
});

async function auditLines(dataDir: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path.join(dataDir, "audit.log"), "utf8").catch(() => "");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

interface ApiKeyJson {
  id: string;
  key?: string;
  tenant: string;
  scopes: string[];
  status: string;
  publishable: boolean;
  origins: string[];
  rateLimit: { perSecond: number; burst: number } | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

describe("/v1/admin/keys", () => {
  it("makes a key for the caller's tenant that works at once, lists it, revokes it, and audits both", async () => {
    current = await makeAuthTestApp();
    const { app, createKey, dataDir } = current;
    const admin = await createKey({ tenant: "acme", scopes: ["admin"], name: "ops" });

    const created = await app.request(
      "/v1/admin/keys",
      post(
        { scopes: ["read", "ingest"], name: "ci", expiresIn: "30d", rateLimit: { perSecond: 5, burst: 10 } },
        admin.key,
      ),
    );
    expect(created.status).toBe(201);
    expect(created.headers.get("cache-control")).toBe("no-store");
    const made = (await created.json()) as ApiKeyJson;
    expect(made).toMatchObject({
      tenant: "acme",
      scopes: ["read", "ingest"],
      status: "active",
      publishable: false,
      rateLimit: { perSecond: 5, burst: 10 },
    });
    expect(made.key).toMatch(/^loupe_sk_/);
    expect(Date.parse(made.expiresAt as string) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect((await app.request("/v1/models", { headers: bearer(made.key as string) })).status).toBe(200);

    const listed = (await (await app.request("/v1/admin/keys", { headers: bearer(admin.key) })).json()) as {
      keys: ApiKeyJson[];
    };
    expect(listed.keys.map((key) => key.id)).toEqual([admin.record.id, made.id]);
    expect(JSON.stringify(listed)).not.toContain(made.key as string);
    expect(listed.keys.every((key) => key.key === undefined)).toBe(true);

    const revoked = await app.request(`/v1/admin/keys/${made.id}`, {
      method: "DELETE",
      headers: bearer(admin.key),
    });
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { key: ApiKeyJson }).key.status).toBe("revoked");
    expect((await app.request("/v1/models", { headers: bearer(made.key as string) })).status).toBe(401);

    const audit = await auditLines(dataDir);
    expect(audit).toHaveLength(2);
    expect(audit[0]).toMatchObject({
      action: "key.create",
      keyId: admin.record.id,
      tenant: "acme",
      route: "POST /v1/admin/keys",
      itemIds: [made.id],
      detail: { scopes: ["read", "ingest"], name: "ci" },
    });
    expect(typeof audit[0]?.requestId).toBe("string");
    expect(audit[1]).toMatchObject({
      action: "key.revoke",
      keyId: admin.record.id,
      tenant: "acme",
      itemIds: [made.id],
    });
    const text = await readFile(path.join(dataDir, "audit.log"), "utf8");
    expect(text).not.toContain(made.key as string);
    expect(text).not.toContain(admin.key);
  });

  it("keeps an admin key inside its own tenant", async () => {
    current = await makeAuthTestApp();
    const { app, createKey } = current;
    const admin = await createKey({ tenant: "acme", scopes: ["admin"] });
    const other = await createKey({ tenant: "globex", scopes: ["read", "admin"] });

    const foreign = await app.request(
      "/v1/admin/keys",
      post({ tenant: "globex", scopes: ["read"] }, admin.key),
    );
    expect(foreign.status).toBe(403);
    expect((await errorOf(foreign)).message).toContain("own tenant");
    const listed = (await (await app.request("/v1/admin/keys", { headers: bearer(admin.key) })).json()) as {
      keys: ApiKeyJson[];
    };
    expect(listed.keys.map((key) => key.tenant)).toEqual(["acme"]);
    const revoke = await app.request(`/v1/admin/keys/${other.record.id}`, {
      method: "DELETE",
      headers: bearer(admin.key),
    });
    expect(revoke.status).toBe(404);
    expect((await app.request("/v1/models", { headers: bearer(other.key) })).status).toBe(200);
    expect((await current.keys.list()).find((key) => key.id === other.record.id)?.revokedAt).toBeNull();
  });

  it("refuses non-admin keys and bad requests", async () => {
    current = await makeAuthTestApp();
    const { app, createKey } = current;
    const reader = await createKey({ tenant: "acme", scopes: ["read", "ingest", "delete"] });
    const admin = await createKey({ tenant: "acme", scopes: ["admin"] });
    for (const [url, init] of [
      ["/v1/admin/keys", { headers: bearer(reader.key) }],
      ["/v1/admin/keys", post({ scopes: ["admin"] }, reader.key)],
      [`/v1/admin/keys/${admin.record.id}`, { method: "DELETE", headers: bearer(reader.key) }],
    ] as const) {
      const response = await app.request(url, init);
      expect(response.status).toBe(403);
      expect((await errorOf(response)).code).toBe("forbidden");
    }
    for (const body of [
      { scopes: ["root"] },
      { scopes: ["read"], key: "loupe_sk_chosen" },
      { scopes: ["read"], expiresIn: "yesterday" },
      { scopes: ["read"], origins: ["https://a.example/path"] },
      { publishable: true },
      { scopes: ["read"], rateLimit: { perSecond: 0, burst: 1 } },
      {},
    ]) {
      const response = await app.request("/v1/admin/keys", post(body, admin.key));
      expect(response.status, JSON.stringify(body)).toBe(400);
    }
    const publishable = await app.request(
      "/v1/admin/keys",
      post({ publishable: true, origins: ["https://app.example.com"] }, admin.key),
    );
    expect(publishable.status).toBe(201);
    expect((await publishable.json()) as ApiKeyJson).toMatchObject({
      publishable: true,
      scopes: ["read"],
      origins: ["https://app.example.com"],
    });
  });
});
