/**
 * The address a request came from, as the bucket of a caller without an API key. IPv6 clients are
 * grouped by their /64 network, since one host commonly holds a whole /64 and could otherwise rotate
 * through addresses to get a fresh bucket each time.
 */

import type { Context } from "hono";
import ipaddr from "ipaddr.js";

/** The peer address of the connection (not a forwarded header, which the client could forge). */
export function clientAddress(c: Context): string | undefined {
  // c.env holds @hono/node-server's bindings when the app runs behind Node's HTTP server; in-process
  // calls (`app.request`) have none.
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  const remote = env?.incoming?.socket?.remoteAddress;
  return remote === undefined ? undefined : addressBucket(remote);
}

/** An IPv4 address as is (IPv4-mapped IPv6 unwrapped); an IPv6 address as its /64 network. */
export function addressBucket(address: string): string {
  // The common case, a plain IPv4 address from Node, needs no parsing.
  if (!address.includes(":")) return address;
  if (!ipaddr.isValid(address)) return address;
  const parsed = ipaddr.process(address);
  if (parsed.kind() === "ipv4") return parsed.toString();
  const parts = (parsed as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((part) => part.toString(16)).join(":")}::/64`;
}
