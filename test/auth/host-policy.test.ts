/** Which Host headers are answered (DNS rebinding), and what LOUPE_ALLOWED_HOSTS accepts. */
import { describe, expect, it } from "vitest";
import {
  createHostPolicy,
  isLoopbackHost,
  parseAllowedHosts,
  parseHost,
} from "../../src/auth/host-policy.ts";
import { parseConfig } from "../../src/config.ts";
import { ConfigError } from "../../src/errors.ts";

describe("the default policy", () => {
  it("bound to loopback: loopback names and addresses, with any port; nothing else", () => {
    const policy = createHostPolicy({ allowedHosts: [], boundHost: "127.0.0.1" });
    for (const host of [
      "127.0.0.1",
      "127.0.0.1:8080",
      "localhost",
      "localhost:8080",
      "LOCALHOST.",
      "[::1]:8080",
      "127.1.2.3",
    ]) {
      expect(policy.allows(host), host).toBe(true);
    }
    for (const host of [
      "evil.example",
      "evil.example:8080",
      "localhost.evil.example",
      "127.0.0.1.nip.io",
      "10.0.0.5:8080",
      "0.0.0.0:8080",
      "",
      "127.0.0.1:99999",
      "a b",
      "::1",
      "[::1",
      "127.0.0.1@evil.example",
    ]) {
      expect(policy.allows(host), host).toBe(false);
    }
  });

  it("bound to a name or an address: that host too", () => {
    const named = createHostPolicy({ allowedHosts: [], boundHost: "loupe.internal" });
    expect(named.allows("loupe.internal:8080")).toBe(true);
    expect(named.allows("other.internal")).toBe(false);
    const address = createHostPolicy({ allowedHosts: [], boundHost: "10.0.0.5" });
    expect(address.allows("10.0.0.5:8080")).toBe(true);
    expect(address.allows("10.0.0.6:8080")).toBe(false);
  });

  it("bound to every interface: any IP address (rebinding needs a name), no name but localhost", () => {
    for (const boundHost of ["0.0.0.0", "::"]) {
      const policy = createHostPolicy({ allowedHosts: [], boundHost });
      for (const host of ["10.0.0.5:8080", "192.168.1.20", "[fe80::1]:8080", "localhost:8080"]) {
        expect(policy.allows(host), `${boundHost} ${host}`).toBe(true);
      }
      for (const host of ["evil.example", "loupe.example.com:8080", "attacker.127.0.0.1.nip.io"]) {
        expect(policy.allows(host), `${boundHost} ${host}`).toBe(false);
      }
    }
  });
});

describe("LOUPE_ALLOWED_HOSTS", () => {
  it("names, subdomain wildcards, ports and *, plus loopback always", () => {
    const policy = createHostPolicy({
      allowedHosts: ["loupe.example.com", "*.corp.example", "10.0.0.5:8443"],
      boundHost: "0.0.0.0",
    });
    expect(policy.allows("loupe.example.com")).toBe(true);
    expect(policy.allows("Loupe.Example.com:443")).toBe(true);
    expect(policy.allows("a.corp.example:8080")).toBe(true);
    expect(policy.allows("corp.example")).toBe(false);
    expect(policy.allows("evilcorp.example")).toBe(false);
    expect(policy.allows("10.0.0.5:8443")).toBe(true);
    expect(policy.allows("10.0.0.5:8080")).toBe(false);
    expect(policy.allows("10.0.0.6")).toBe(false);
    expect(policy.allows("127.0.0.1:8080")).toBe(true);
    expect(policy.allows("evil.example")).toBe(false);
    expect(createHostPolicy({ allowedHosts: ["*"], boundHost: "0.0.0.0" }).allows("anything.example")).toBe(
      true,
    );
  });

  it("is checked at start-up, naming the bad entry", () => {
    expect(() => parseAllowedHosts(["loupe.example.com", "http://x"])).toThrow('"http://x"');
    expect(() => parseConfig({ env: { LOUPE_ALLOWED_HOSTS: "ok.example, bad host" } })).toThrowError(
      ConfigError,
    );
    expect(
      parseConfig({ env: { LOUPE_ALLOWED_HOSTS: " a.example ,*.b.example:8080 " } }).allowedHosts,
    ).toEqual(["a.example", "*.b.example:8080"]);
    expect(parseConfig({ env: {} }).allowedHosts).toEqual([]);
  });

  it("parses hosts", () => {
    expect(parseHost("[::1]:8080")).toEqual({ hostname: "::1", port: 8080 });
    expect(parseHost("Example.COM.")).toEqual({ hostname: "example.com", port: undefined });
    expect(parseHost("a:b:c")).toBeUndefined();
    expect(isLoopbackHost("[::1]")).toBe(true);
    expect(isLoopbackHost("127.255.0.1")).toBe(true);
    expect(isLoopbackHost("128.0.0.1")).toBe(false);
  });
});
