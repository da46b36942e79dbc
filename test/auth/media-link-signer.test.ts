/**
 * Signed media links: a link verifies for exactly the path and key it was made for, until it expires;
 * any change to the path, key id, expiry or signature, another server secret, or a date further ahead
 * than the lifetime allows makes it invalid; the secret is read once, on first use.
 */
import { describe, expect, it } from "vitest";
import { createMediaLinkSigner } from "../../src/auth/media-link-signer.ts";

const SECRET = "a-server-secret-of-at-least-32-characters";
const KEY_ID = "key_0123456789abcdef";
const PATH = "/v1/media/img_0123456789abcdef0123456789abcdef";

function signerAt(clock: { ms: number }, secret = SECRET, ttlSeconds = 600) {
  return createMediaLinkSigner({ secret: async () => secret, ttlSeconds, now: () => clock.ms });
}

describe("createMediaLinkSigner", () => {
  it("signs a path for a key until now + ttl, and verifies exactly that link", async () => {
    const clock = { ms: 1_700_000_000_000 };
    const signer = signerAt(clock);
    const link = await signer.sign({ path: PATH, keyId: KEY_ID });
    expect(link.expires).toBe(1_700_000_600);
    expect(link.keyId).toBe(KEY_ID);
    expect(link.signature).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const check = (changes: Partial<{ path: string; keyId: string; expires: string; signature: string }>) =>
      signer.verify({
        path: PATH,
        keyId: KEY_ID,
        expires: String(link.expires),
        signature: link.signature,
        ...changes,
      });
    expect(await check({})).toBe("valid");
    expect(await check({ path: `${PATH}/thumbnail` })).toBe("invalid");
    expect(await check({ path: "/v1/media/img_ffffffffffffffffffffffffffffffff" })).toBe("invalid");
    expect(await check({ keyId: "key_fedcba9876543210" })).toBe("invalid");
    expect(await check({ expires: String(link.expires + 1) })).toBe("invalid");
    const flipped = `${link.signature.slice(0, -1)}${link.signature.endsWith("A") ? "B" : "A"}`;
    expect(await check({ signature: flipped })).toBe("invalid");
    for (const malformed of ["", "x", `${link.signature}=`, link.signature.slice(1)]) {
      expect(await check({ signature: malformed })).toBe("invalid");
    }
    for (const expires of ["", "-1", "1e9", " 1700000600", "17000006000000"]) {
      expect(await check({ expires })).toBe("invalid");
    }
    expect(await check({ keyId: "key_0123456789ABCDEF" })).toBe("invalid");
  });

  it("a link expires at its time, and another secret never accepts it", async () => {
    const clock = { ms: 1_700_000_000_000 };
    const signer = signerAt(clock);
    const link = await signer.sign({ path: PATH, keyId: KEY_ID });
    const input = { path: PATH, keyId: KEY_ID, expires: String(link.expires), signature: link.signature };
    clock.ms += 600_000;
    expect(await signer.verify(input)).toBe("valid");
    clock.ms += 1_000;
    expect(await signer.verify(input)).toBe("expired");
    clock.ms -= 601_000;
    expect(await signerAt(clock, `${SECRET}!`).verify(input)).toBe("invalid");
  });

  it("a link dated further ahead than the current lifetime allows is invalid (the lifetime was shortened)", async () => {
    const clock = { ms: 1_700_000_000_000 };
    const link = await signerAt(clock, SECRET, 86_400).sign({ path: PATH, keyId: KEY_ID });
    const input = { path: PATH, keyId: KEY_ID, expires: String(link.expires), signature: link.signature };
    expect(await signerAt(clock, SECRET, 86_400).verify(input)).toBe("valid");
    expect(await signerAt(clock, SECRET, 600).verify(input)).toBe("invalid");
  });

  it("reads the secret once, on first use, and again after a failed read", async () => {
    let reads = 0;
    let fail = true;
    const signer = createMediaLinkSigner({
      secret: async () => {
        reads += 1;
        if (fail) throw new Error("the secret file is unreadable");
        return SECRET;
      },
      ttlSeconds: 600,
    });
    expect(reads).toBe(0);
    await expect(signer.sign({ path: PATH, keyId: KEY_ID })).rejects.toThrow("unreadable");
    fail = false;
    const link = await signer.sign({ path: PATH, keyId: KEY_ID });
    await signer.verify({
      path: PATH,
      keyId: KEY_ID,
      expires: String(link.expires),
      signature: link.signature,
    });
    expect(reads).toBe(2);
  });
});
