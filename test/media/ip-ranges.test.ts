import { describe, expect, it } from "vitest";
import {
  classifyAddress,
  isAllowedAddress,
  parseAddress,
  parseAllowHosts,
} from "../../src/media/ip-ranges.ts";

function verdict(text: string) {
  const address = parseAddress(text);
  if (!address) throw new Error(`not an address: ${text}`);
  return classifyAddress(address);
}

describe("classifyAddress", () => {
  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "64:ff9b::808:808",
    "2002:808:808::1",
  ])("allows the global unicast address %s", (text) => {
    expect(verdict(text)).toEqual({ allowed: true });
  });

  it.each([
    ["127.0.0.1", "a loopback address"],
    ["0.0.0.0", "an unspecified ('this network') address"],
    ["169.254.169.254", "a link-local address"],
    ["100.100.100.200", "a shared (carrier-grade NAT) address"],
    ["::ffff:192.168.0.1", "an IPv4-mapped IPv6 address (of 192.168.0.1)"],
    ["::10.0.0.1", "an IPv4-compatible IPv6 address (of 10.0.0.1)"],
    ["64:ff9b::a00:1", "a NAT64 address of 10.0.0.1, a private address"],
    ["64:ff9b:1::1", "a local-use NAT64 address"],
    ["2002:a9fe:a9fe::", "a 6to4 address of 169.254.169.254, a link-local address"],
    ["2001::1", "a Teredo tunnel address"],
    ["100::1", "a discard-only address"],
    ["3fff::1", "a documentation address"],
    ["4000::1", "outside global unicast (2000::/3)"],
  ])("refuses %s as %s", (text, reason) => {
    expect(verdict(text)).toEqual({ allowed: false, reason });
  });

  it("parses only canonical addresses: odd IPv4 spellings are left to the URL parser", () => {
    expect(parseAddress("0x7f000001")).toBeUndefined();
    expect(parseAddress("2130706433")).toBeUndefined();
    expect(parseAddress("127.1")).toBeUndefined();
    expect(parseAddress("[::1]")?.toString()).toBe("::1");
  });
});

describe("parseAllowHosts", () => {
  it("takes names, addresses and CIDR ranges", () => {
    const list = parseAllowHosts(["LocalHost.", " 127.0.0.1 ", "10.0.0.0/8", "fd00::/8", "", "::1"]);
    expect([...list.names]).toEqual(["localhost"]);
    expect(isAllowedAddress(list, parseAddress("10.200.1.1") as never)).toBe(true);
    expect(isAllowedAddress(list, parseAddress("fd12::1") as never)).toBe(true);
    expect(isAllowedAddress(list, parseAddress("127.0.0.2") as never)).toBe(false);
    expect(isAllowedAddress(list, parseAddress("::1") as never)).toBe(true);
  });

  it.each(["10.0.0.0/33", "fd00::/129", "bad name!", "10.0.0.0/x", "0x7f000001/8"])("rejects %j", (entry) => {
    expect(() => parseAllowHosts([entry])).toThrow(entry);
  });
});
