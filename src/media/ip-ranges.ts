/**
 * Which IP addresses Loupe may fetch from. Only global unicast addresses pass: every loopback,
 * private, link-local (cloud metadata), shared, documentation, benchmarking, multicast and reserved
 * range is refused, in IPv4 and IPv6, including IPv6 forms that embed an IPv4 address (mapped,
 * compatible, NAT64, 6to4) and Teredo. An allow-list ({@link parseAllowHosts}) opens named hosts,
 * addresses or CIDR ranges explicitly, for tests and private deployments.
 */
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** A range that is refused, with the words error messages use for it. */
interface RefusedRange {
  cidr: string;
  /** Completes "… is …", e.g. "a loopback address". */
  description: string;
}

const refusedIPv4: readonly RefusedRange[] = [
  { cidr: "0.0.0.0/8", description: "an unspecified ('this network') address" },
  { cidr: "10.0.0.0/8", description: "a private address" },
  { cidr: "100.64.0.0/10", description: "a shared (carrier-grade NAT) address" },
  { cidr: "127.0.0.0/8", description: "a loopback address" },
  { cidr: "169.254.0.0/16", description: "a link-local address" },
  { cidr: "172.16.0.0/12", description: "a private address" },
  { cidr: "192.0.0.0/24", description: "an IETF protocol assignment address" },
  { cidr: "192.0.2.0/24", description: "a documentation address" },
  { cidr: "192.88.99.0/24", description: "a 6to4 relay anycast address" },
  { cidr: "192.168.0.0/16", description: "a private address" },
  { cidr: "198.18.0.0/15", description: "a benchmarking address" },
  { cidr: "198.51.100.0/24", description: "a documentation address" },
  { cidr: "203.0.113.0/24", description: "a documentation address" },
  { cidr: "224.0.0.0/4", description: "a multicast address" },
  { cidr: "255.255.255.255/32", description: "the broadcast address" },
  { cidr: "240.0.0.0/4", description: "a reserved address" },
];

// Checked in order after the IPv4-embedding forms; anything outside 2000::/3 is not global unicast.
const refusedIPv6: readonly RefusedRange[] = [
  { cidr: "::/128", description: "the unspecified address" },
  { cidr: "::1/128", description: "a loopback address" },
  { cidr: "fc00::/7", description: "a unique-local (private) address" },
  { cidr: "fe80::/10", description: "a link-local address" },
  { cidr: "fec0::/10", description: "a site-local address" },
  { cidr: "ff00::/8", description: "a multicast address" },
  { cidr: "64:ff9b:1::/48", description: "a local-use NAT64 address" },
  { cidr: "100::/64", description: "a discard-only address" },
  { cidr: "2001::/32", description: "a Teredo tunnel address" },
  { cidr: "2001:db8::/32", description: "a documentation address" },
  { cidr: "2001::/23", description: "an IETF protocol assignment address" },
  { cidr: "3fff::/20", description: "a documentation address" },
];

const parsedIPv4 = refusedIPv4.map((range) => ({ ...range, parsed: ipaddr.parseCIDR(range.cidr) }));
const parsedIPv6 = refusedIPv6.map((range) => ({ ...range, parsed: ipaddr.parseCIDR(range.cidr) }));
const globalUnicastIPv6 = ipaddr.parseCIDR("2000::/3");

/** Verdict on one address. */
export type AddressVerdict =
  | { allowed: true }
  | {
      allowed: false;
      /** Why, completing "… is …": "a loopback address", "an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address". */
      reason: string;
    };

/**
 * Parses an address in canonical form only: dotted-quad IPv4 (four decimal parts) or IPv6, optionally
 * in brackets. Odd IPv4 spellings (hex, octal, fewer parts) are not addresses here; `new URL` turns
 * them into dotted quads before this is called.
 */
export function parseAddress(text: string): Address | undefined {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const family = isIP(bare);
  if (family === 4) return ipaddr.IPv4.parse(bare);
  if (family === 6) {
    // Rewritten by the WHATWG parser first: ipaddr.js reads the compatible form `::a.b.c.d` as mapped.
    const canonical = new URL(`http://[${bare.split("%")[0]}]/`).hostname.slice(1, -1);
    return ipaddr.IPv6.parse(canonical);
  }
  return undefined;
}

function classifyIPv4(address: ipaddr.IPv4): AddressVerdict {
  for (const range of parsedIPv4) {
    if (address.match(range.parsed)) return { allowed: false, reason: range.description };
  }
  return { allowed: true };
}

function embedded(kind: string, ipv4: ipaddr.IPv4): AddressVerdict {
  const inner = classifyIPv4(ipv4);
  if (inner.allowed) return inner;
  return { allowed: false, reason: `${kind} of ${ipv4.toString()}, ${inner.reason}` };
}

function classifyIPv6(address: ipaddr.IPv6): AddressVerdict {
  const parts = address.parts;
  const bytes = address.toByteArray();
  const lastIPv4 = () => new ipaddr.IPv4(bytes.slice(12, 16));
  // ::ffff:a.b.c.d and the deprecated ::a.b.c.d reach IPv4 hosts directly on dual-stack sockets;
  // no public name needs them, so they are refused whatever they embed.
  if (address.isIPv4MappedAddress()) {
    return { allowed: false, reason: `an IPv4-mapped IPv6 address (of ${lastIPv4().toString()})` };
  }
  if (
    parts.slice(0, 6).every((part) => part === 0) &&
    !(parts[6] === 0 && parts[7] !== undefined && parts[7] <= 1)
  ) {
    return { allowed: false, reason: `an IPv4-compatible IPv6 address (of ${lastIPv4().toString()})` };
  }
  if (address.match(ipaddr.parseCIDR("64:ff9b::/96"))) return embedded("a NAT64 address", lastIPv4());
  if (address.match(ipaddr.parseCIDR("2002::/16"))) {
    return embedded("a 6to4 address", new ipaddr.IPv4(bytes.slice(2, 6)));
  }
  for (const range of parsedIPv6) {
    if (address.match(range.parsed)) return { allowed: false, reason: range.description };
  }
  if (!address.match(globalUnicastIPv6))
    return { allowed: false, reason: "outside global unicast (2000::/3)" };
  return { allowed: true };
}

/** Whether an address is global unicast, and if not, which refused range holds it. */
export function classifyAddress(address: Address): AddressVerdict {
  return address.kind() === "ipv4"
    ? classifyIPv4(address as ipaddr.IPv4)
    : classifyIPv6(address as ipaddr.IPv6);
}

/** Parsed allow-list: host names (lowercase, no trailing dot) and address ranges. */
export interface AllowList {
  names: ReadonlySet<string>;
  ranges: ReadonlyArray<[Address, number]>;
}

/** Normalizes a host name for comparison: lowercase, without the root's trailing dot or IPv6 brackets. */
export function normalizeHostName(host: string): string {
  const lower = host.toLowerCase();
  const unbracketed = lower.startsWith("[") && lower.endsWith("]") ? lower.slice(1, -1) : lower;
  return unbracketed.endsWith(".") ? unbracketed.slice(0, -1) : unbracketed;
}

const hostNamePattern =
  /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/**
 * Parses allow-list entries: host names (`localhost`), addresses (`127.0.0.1`, `::1`) and CIDR ranges
 * (`127.0.0.0/8`, `fd00::/8`). Throws a plain `Error` naming the first invalid entry; callers wrap it.
 */
export function parseAllowHosts(entries: readonly string[]): AllowList {
  const names = new Set<string>();
  const ranges: Array<[Address, number]> = [];
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === "") continue;
    if (entry.includes("/")) {
      const [base = "", bits = ""] = entry.split("/");
      const address = parseAddress(base);
      const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : Number.NaN;
      const max = address?.kind() === "ipv4" ? 32 : 128;
      if (!address || !(prefix >= 0 && prefix <= max)) {
        throw new Error(`"${entry}" is not a CIDR range such as 127.0.0.0/8 or fd00::/8`);
      }
      ranges.push([address, prefix]);
      continue;
    }
    const address = parseAddress(entry);
    if (address) {
      ranges.push([address, address.kind() === "ipv4" ? 32 : 128]);
      continue;
    }
    const name = normalizeHostName(entry);
    if (!hostNamePattern.test(name)) {
      throw new Error(`"${entry}" is neither a host name, an IP address nor a CIDR range`);
    }
    names.add(name);
  }
  return { names, ranges };
}

/** Whether an address falls in one of the allow-list's ranges (same family only). */
export function isAllowedAddress(allowList: AllowList, address: Address): boolean {
  return allowList.ranges.some(([base, bits]) => base.kind() === address.kind() && address.match(base, bits));
}
