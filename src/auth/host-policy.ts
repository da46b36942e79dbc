/**
 * Which `Host` headers Loupe answers (the defence against DNS rebinding: a page on an attacker's name
 * that resolves to Loupe's address still sends its own name as `Host`).
 *
 * Always allowed: `localhost` and loopback addresses, which a rebinding page can never send. Then
 * either the configured list (`LOUPE_ALLOWED_HOSTS`: names, addresses, `*.example.com`, each with an
 * optional port, or `*` for any host), or by default the bound address, and, when Loupe binds every
 * interface (`0.0.0.0`, `::`), any IP address: a name is what rebinding needs, an address is not.
 * An entry without a port matches every port.
 */
import { isIP } from "node:net";

/** A `Host` (or allowed-host entry) split into its name and port. */
export interface HostParts {
  /** Lower case, without brackets or a trailing dot. */
  hostname: string;
  port: number | undefined;
}

/** One entry of the allowed list. */
interface HostRule {
  /** `*` matches every host; `*.example.com` every subdomain of example.com. */
  pattern: string;
  port: number | undefined;
}

const NAME =
  /^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Splits `name[:port]`, `a.b.c.d[:port]` or `[v6][:port]`; `undefined` for anything else. */
export function parseHost(text: string): HostParts | undefined {
  const value = text.trim().toLowerCase();
  let hostname: string;
  let portText: string | undefined;
  if (value.startsWith("[")) {
    const match = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/.exec(value);
    if (match === null || isIP(match[1] as string) !== 6) return undefined;
    hostname = match[1] as string;
    portText = match[2];
  } else {
    const match = /^([^:]+)(?::(\d{1,5}))?$/.exec(value);
    if (match === null) return undefined;
    hostname = (match[1] as string).replace(/\.$/, "");
    portText = match[2];
    if (isIP(hostname) !== 4 && !NAME.test(hostname)) return undefined;
  }
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && port > 65_535) return undefined;
  return { hostname, port };
}

/** Whether a host name is loopback: `localhost` or an address in 127.0.0.0/8 or `::1`. */
export function isLoopbackHost(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (name === "localhost") return true;
  if (isIP(name) === 4) return name.startsWith("127.");
  if (isIP(name) === 6) return name === "::1" || name === "0:0:0:0:0:0:0:1";
  return false;
}

/** Whether a bind address stands for every interface. */
export function isWildcardAddress(host: string): boolean {
  const name = host.replace(/^\[|\]$/g, "");
  return name === "0.0.0.0" || name === "::" || name === "0:0:0:0:0:0:0:0";
}

function parseRule(entry: string): HostRule | undefined {
  const text = entry.trim().toLowerCase();
  if (text === "*") return { pattern: "*", port: undefined };
  if (text.startsWith("*.")) {
    const rest = parseHost(text.slice(2));
    if (rest === undefined || isIP(rest.hostname) !== 0) return undefined;
    return { pattern: `*.${rest.hostname}`, port: rest.port };
  }
  const parts = parseHost(text);
  return parts === undefined ? undefined : { pattern: parts.hostname, port: parts.port };
}

/**
 * Checks the entries of `LOUPE_ALLOWED_HOSTS`.
 *
 * @throws {Error} naming the first entry that is not a name, address, `*.name` or `*`, with an optional port.
 */
export function parseAllowedHosts(entries: readonly string[]): void {
  for (const entry of entries) {
    if (parseRule(entry) === undefined) {
      throw new Error(
        `${JSON.stringify(entry)} is not a host name, IP address, *.domain or *, with an optional :port`,
      );
    }
  }
}

/** Decides whether a request's `Host` is one this server answers to. */
export interface HostPolicy {
  allows(host: string): boolean;
}

/** The policy for a server bound to `boundHost`, with `allowedHosts` (empty: the default). */
export function createHostPolicy({
  allowedHosts,
  boundHost,
}: {
  allowedHosts: readonly string[];
  boundHost: string;
}): HostPolicy {
  const configured = allowedHosts.map(parseRule).filter((rule): rule is HostRule => rule !== undefined);
  const bound = parseHost(
    boundHost.includes(":") && !boundHost.startsWith("[") ? `[${boundHost}]` : boundHost,
  );
  const anyAddress = allowedHosts.length === 0 && isWildcardAddress(boundHost);
  const rules: HostRule[] =
    allowedHosts.length > 0
      ? configured
      : bound !== undefined && !isWildcardAddress(bound.hostname)
        ? [{ pattern: bound.hostname, port: undefined }]
        : [];
  return {
    allows(host) {
      const parts = parseHost(host);
      if (parts === undefined) return false;
      if (isLoopbackHost(parts.hostname)) return true;
      if (anyAddress && isIP(parts.hostname) !== 0) return true;
      return rules.some(
        (rule) =>
          (rule.port === undefined || rule.port === parts.port) &&
          (rule.pattern === "*" ||
            rule.pattern === parts.hostname ||
            (rule.pattern.startsWith("*.") && parts.hostname.endsWith(rule.pattern.slice(1)))),
      );
    },
  };
}
