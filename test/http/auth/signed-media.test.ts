/**
 * Signed media links through the production wiring, with a real key store in a temporary data dir: a
 * link signed under the key store's secret opens its one media path without a key, as the linked key's
 * tenant with `read` only; an altered, expired, misplaced or revoked link is refused with 401
 * `invalid_media_link`, and a link is never a key anywhere else. The store records which tenant asked
 * and finds nothing (404), which shows that the request got past authentication.
 */
import { afterEach, describe, expect, it } from "vitest";
import { keyStoreDir } from "../../../src/auth/file-key-store.ts";
import { readKeySecret } from "../../../src/auth/key-secret.ts";
import { createMediaLinkSigner } from "../../../src/auth/media-link-signer.ts";
import type { VectorStore } from "../../../src/store/index.ts";
import { type AuthTestApp, bearer, errorOf, makeAuthTestApp } from "../auth-fixtures.ts";

const IMAGE_ID = "img_0123456789abcdef0123456789abcdef";
const PATH = `/v1/media/${IMAGE_ID}`;

let current: AuthTestApp | undefined;
let tenantsAsked: string[] = [];

/** A store that finds nothing and notes the tenant of each lookup. */
const emptyStore = new Proxy({} as VectorStore, {
  get(_target, property) {
    if (property === "then") return undefined;
    return async (input: { tenant?: string }) => {
      tenantsAsked.push(input?.tenant ?? "?");
      return [];
    };
  },
});

afterEach(async () => {
  await current?.dispose();
  current = undefined;
  tenantsAsked = [];
});

/** An app with one read key of tenant `acme`, and a signer over the same secret as the app's. */
async function setUp() {
  current = await makeAuthTestApp({ store: emptyStore });
  const created = await current.createKey({ tenant: "acme", scopes: ["read"] });
  const dataDir = current.dataDir;
  const signerAt = (nowMs = Date.now()) =>
    createMediaLinkSigner({
      secret: async () => (await readKeySecret(keyStoreDir(dataDir))) ?? "missing",
      ttlSeconds: 3600,
      now: () => nowMs,
    });
  const link = async (path = PATH, nowMs?: number) => {
    const signed = await signerAt(nowMs).sign({ path, keyId: created.record.id });
    return `${path}?exp=${signed.expires}&kid=${signed.keyId}&sig=${signed.signature}`;
  };
  return { app: current.app, keys: current.keys, created, link };
}

describe("signed media links", () => {
  it("open their media path without a key, as the key's tenant", async () => {
    const { app, link } = await setUp();
    const response = await app.request(await link());
    const error = await errorOf(response);
    expect(response.status, error.message).toBe(404);
    expect(error.code).toBe("not_found");
    expect(tenantsAsked).toEqual(["acme"]);
    const thumbnail = await app.request(await link(`${PATH}/thumbnail`));
    expect(thumbnail.status).toBe(404);
    expect(tenantsAsked).toEqual(["acme", "acme"]);
  });

  it("without a link or a key, media still needs a key", async () => {
    const { app } = await setUp();
    const response = await app.request(PATH);
    expect(response.status).toBe(401);
    expect((await errorOf(response)).code).toBe("unauthorized");
    expect(tenantsAsked).toEqual([]);
  });

  it.each([
    [
      "an altered signature",
      (url: string) => url.replace(/sig=(.)/, (_m, c: string) => `sig=${c === "A" ? "B" : "A"}`),
    ],
    [
      "a later expiry",
      (url: string) => url.replace(/exp=(\d+)/, (_m, exp: string) => `exp=${Number(exp) + 60}`),
    ],
    ["another key id", (url: string) => url.replace(/kid=key_[0-9a-f]{16}/, "kid=key_0000000000000000")],
    ["another item", (url: string) => url.replace(IMAGE_ID, "img_ffffffffffffffffffffffffffffffff")],
    ["the thumbnail of the linked item", (url: string) => url.replace("?", "/thumbnail?")],
    ["a percent-encoded path", (url: string) => url.replace("img_", "img%5F")],
  ])("refuse %s with 401 invalid_media_link", async (_name, change) => {
    const { app, link } = await setUp();
    const response = await app.request(change(await link()));
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="loupe"');
    const error = await errorOf(response);
    expect(error.code).toBe("invalid_media_link");
    expect(error.message).toMatch(/This media link is not valid/);
    expect(tenantsAsked).toEqual([]);
  });

  it("refuse an expired link, saying it expired", async () => {
    const { app, link } = await setUp();
    const response = await app.request(await link(PATH, Date.now() - 3_700_000));
    expect(response.status).toBe(401);
    expect((await errorOf(response)).message).toMatch(/has expired\. Ask the question again/);
  });

  it("stop opening when their key is revoked", async () => {
    const { app, keys, created, link } = await setUp();
    const url = await link();
    expect((await app.request(url)).status).toBe(404);
    await keys.revoke(created.record.id);
    const response = await app.request(url);
    expect(response.status).toBe(401);
    expect((await errorOf(response)).message).toMatch(/no longer active/);
  });

  it("are no key elsewhere: another route, or another method, with the same query needs a key", async () => {
    const { app, link } = await setUp();
    const query = (await link()).split("?")[1];
    const items = await app.request(`/v1/items/${IMAGE_ID}?${query}`);
    expect(items.status).toBe(401);
    expect((await errorOf(items)).code).toBe("unauthorized");
    const deleted = await app.request(`${PATH}?${query}`, { method: "DELETE" });
    expect(deleted.status).toBe(401);
    expect(tenantsAsked).toEqual([]);
  });

  it("a key sent with a link is what counts", async () => {
    const { app, link } = await setUp();
    const response = await app.request(await link(), { headers: bearer("loupe_not_a_real_key") });
    expect(response.status).toBe(401);
    expect((await errorOf(response)).code).toBe("invalid_api_key");
  });
});
