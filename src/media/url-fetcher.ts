/**
 * The one way Loupe downloads a URL a caller gave. Every URL is hostile: only http and https, no
 * credentials, the host resolved once and refused unless every address is global unicast (see
 * `ip-ranges.ts`), the connection pinned to the checked address (DNS rebinding cannot switch it),
 * redirects followed by hand and each hop checked again, one deadline over the whole fetch, a byte
 * limit enforced while streaming, and the content type checked against the caller's allow-list and
 * against the leading bytes. No cookies or credentials are sent; the User-Agent is fixed.
 *
 * Any port is allowed: the address check, not the port, is what keeps requests off internal
 * services, and public media hosts do serve from non-default ports.
 */
import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { UrlFetchError } from "../errors.ts";
import {
  type AllowList,
  classifyAddress,
  isAllowedAddress,
  normalizeHostName,
  parseAddress,
  parseAllowHosts,
} from "./ip-ranges.ts";

/** One resolved address, as `dns.lookup(name, { all: true })` returns it. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name to all its addresses. Injectable so tests can make any name resolve anywhere. */
export type HostLookup = (hostname: string) => Promise<ResolvedAddress[]>;

/** The system resolver (`getaddrinfo`, honouring /etc/hosts), all addresses, in the resolver's order. */
export const systemLookup: HostLookup = (hostname) =>
  dns.promises.lookup(hostname, { all: true, verbatim: true });

/** User-Agent of every fetch. */
export const urlFetcherUserAgent = "Loupe/0.1 (media fetcher)";

/** Options of {@link fetchUrl}. */
export interface FetchUrlOptions {
  /** The URL to fetch (http or https). */
  url: string;
  /** Largest body accepted, in bytes; a longer body is cut off and refused (413). */
  maxBytes: number;
  /** Deadline of the whole fetch (every hop's connect, headers and body), in milliseconds. */
  timeoutMs: number;
  /** Media types accepted, e.g. `["image/jpeg", "image/png"]`; `image/*` accepts any image type. */
  allowedContentTypes: readonly string[];
  /**
   * Hosts reachable although not public: names (`localhost`), addresses (`127.0.0.1`) or CIDR ranges
   * (`127.0.0.0/8`). A name entry opens that name whatever it resolves to; an address entry opens that
   * address whatever name leads to it. Empty by default (`LOUPE_URL_ALLOW_HOSTS`).
   */
  allowHosts?: readonly string[];
  /** Redirects followed at most; each hop is checked like the first URL. */
  maxRedirects?: number;
  /** Resolver; defaults to {@link systemLookup}. */
  lookup?: HostLookup;
  /** Cancels the fetch. */
  signal?: AbortSignal;
}

/** A fetched body. */
export interface FetchedUrl {
  bytes: Buffer;
  /**
   * Media type of the body: the type its leading bytes show when it has a known signature (JPEG, PNG,
   * WebP, GIF, MP4/QuickTime, WebM, Matroska, AVI), else the declared type without parameters.
   */
  contentType: string;
  /** URL the body came from, after redirects. */
  finalUrl: string;
}

const allowHint = "Allow it with LOUPE_URL_ALLOW_HOSTS";

function shown(url: string): string {
  return url.length > 200 ? `${url.slice(0, 200)}…` : url;
}

/** Parses and checks one URL (the first or a redirect target) without any network access. */
function checkUrl(text: string, base?: URL): URL {
  let url: URL;
  try {
    url = base ? new URL(text, base) : new URL(text);
  } catch {
    throw new UrlFetchError(`"${shown(text)}" is not a valid URL; expected an absolute http or https URL.`, {
      status: 400,
      code: "url_invalid",
      context: { url: shown(text) },
    });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UrlFetchError(
      `${shown(url.href)} uses the scheme "${url.protocol.slice(0, -1)}"; only http and https URLs are fetched.`,
      { status: 400, code: "url_invalid", context: { url: shown(url.href) } },
    );
  }
  if (url.username !== "" || url.password !== "") {
    url.username = "";
    url.password = "";
    throw new UrlFetchError(
      `The URL for ${shown(url.href)} carries credentials (user:password@); credentials in URLs are refused. Give a URL that needs no login.`,
      { status: 400, code: "url_invalid", context: { url: shown(url.href) } },
    );
  }
  return url;
}

function refused(url: URL, address: string, reason: string): UrlFetchError {
  const literal = normalizeHostName(url.hostname) === normalizeHostName(address);
  const where = literal ? `${url.href} points at ${address}` : `${url.href} resolves to ${address}`;
  return new UrlFetchError(`${where}, ${reason}; only public addresses are fetched. ${allowHint}.`, {
    status: 400,
    code: "url_address_refused",
    context: { url: shown(url.href), address, reason },
  });
}

/** Resolves the URL's host and returns the one address to connect to, or throws if any address is refused. */
async function resolveChecked(options: {
  url: URL;
  allowList: AllowList;
  lookup: HostLookup;
}): Promise<ResolvedAddress> {
  const { url, allowList, lookup } = options;
  const host = normalizeHostName(url.hostname);
  const literal = parseAddress(host);
  if (literal) {
    const address = literal.toString();
    if (!isAllowedAddress(allowList, literal)) {
      const verdict = classifyAddress(literal);
      if (!verdict.allowed) throw refused(url, address, verdict.reason);
    }
    return { address, family: literal.kind() === "ipv4" ? 4 : 6 };
  }
  let answers: ResolvedAddress[];
  try {
    answers = await lookup(host);
  } catch (error) {
    throw new UrlFetchError(`The host of ${url.href} could not be resolved (${host}); check the URL.`, {
      code: "url_unreachable",
      cause: error,
      context: { url: shown(url.href), host },
    });
  }
  if (answers.length === 0) {
    throw new UrlFetchError(`The host of ${url.href} has no addresses (${host}); check the URL.`, {
      code: "url_unreachable",
      context: { url: shown(url.href), host },
    });
  }
  const nameAllowed = allowList.names.has(host);
  // Every answer is checked, not only the one used: a mixed answer is a rebinding attempt.
  for (const answer of answers) {
    const parsed = parseAddress(answer.address);
    if (!parsed) throw refused(url, answer.address, "not an IP address");
    if (nameAllowed || isAllowedAddress(allowList, parsed)) continue;
    const verdict = classifyAddress(parsed);
    if (!verdict.allowed) throw refused(url, parsed.toString(), verdict.reason);
  }
  const first = answers[0] as ResolvedAddress;
  return { address: normalizeHostName(first.address), family: first.family };
}

/** Whether a media type is in the allow-list (`image/*` entries accept the whole top-level type). */
function isAllowedType(type: string, allowed: readonly string[]): boolean {
  return allowed.some((entry) => {
    const pattern = entry.toLowerCase();
    return pattern === type || (pattern.endsWith("/*") && type.startsWith(pattern.slice(0, -1)));
  });
}

const typeAliases: Record<string, string> = {
  "image/jpg": "image/jpeg",
  "image/pjpeg": "image/jpeg",
  "video/avi": "video/x-msvideo",
  "video/msvideo": "video/x-msvideo",
  "video/matroska": "video/x-matroska",
  "video/mkv": "video/x-matroska",
};

/** The media type of a `Content-Type` header, lowercase, without parameters, aliases resolved. */
export function parseMediaType(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const type = (header.split(";")[0] ?? "").trim().toLowerCase();
  if (!/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(type)) return undefined;
  return typeAliases[type] ?? type;
}

/** Media types {@link sniffMediaType} can recognise; a body declared as one of these must carry its signature. */
export const sniffableTypes: ReadonlySet<string> = new Set([
  "image/jpeg",
  "image/png",
  "image/gif",
  "image/webp",
  "video/mp4",
  "video/quicktime",
  "video/webm",
  "video/x-matroska",
  "video/x-msvideo",
]);

function ascii(bytes: Buffer, start: number, end: number): string {
  return bytes.subarray(start, end).toString("latin1");
}

/** The media type shown by a body's leading bytes, when it is one of {@link sniffableTypes}. */
export function sniffMediaType(bytes: Buffer): string | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "image/jpeg";
  if (
    bytes.length >= 8 &&
    bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  ) {
    return "image/png";
  }
  const head6 = ascii(bytes, 0, 6);
  if (head6 === "GIF87a" || head6 === "GIF89a") return "image/gif";
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === "RIFF") {
    const form = ascii(bytes, 8, 12);
    if (form === "WEBP") return "image/webp";
    if (form === "AVI ") return "video/x-msvideo";
  }
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === "ftyp") {
    return ascii(bytes, 8, 12) === "qt  " ? "video/quicktime" : "video/mp4";
  }
  if (bytes.length >= 4 && bytes.readUInt32BE(0) === 0x1a45dfa3) {
    // EBML header: the DocType element (0x4282) names webm or matroska within the first bytes.
    const header = ascii(bytes, 4, Math.min(bytes.length, 64));
    if (header.includes("webm")) return "video/webm";
    if (header.includes("matroska")) return "video/x-matroska";
  }
  return undefined;
}

/** Checks the body against the declared type and the allow-list; returns the type to report. */
function checkContent(options: {
  url: string;
  declared: string;
  bytes: Buffer;
  allowed: readonly string[];
}): string {
  const { url, declared, bytes, allowed } = options;
  const list = allowed.join(", ");
  if (bytes.length === 0) {
    throw new UrlFetchError(`${url} answered with an empty body (0 bytes); expected one of: ${list}.`, {
      status: 422,
      code: "url_empty",
      context: { url },
    });
  }
  const sniffed = sniffMediaType(bytes);
  if (sniffed !== undefined) {
    if (!isAllowedType(sniffed, allowed)) {
      throw new UrlFetchError(
        `${url} is declared as ${declared} but its bytes are ${sniffed}, which is not accepted here; expected one of: ${list}.`,
        { status: 415, code: "url_content_type", context: { url, declared, sniffed } },
      );
    }
    return sniffed;
  }
  if (sniffableTypes.has(declared) || declared.startsWith("image/") || declared.startsWith("video/")) {
    throw new UrlFetchError(
      `${url} is declared as ${declared} but its bytes do not start with the signature of any accepted type; expected one of: ${list}.`,
      { status: 415, code: "url_content_type", context: { url, declared } },
    );
  }
  return declared;
}

interface HopResult {
  kind: "redirect" | "body";
  location?: string;
  bytes?: Buffer;
  contentType?: string;
}

/** One request to one checked address. Resolves with a redirect target or a checked body. */
function requestOnce(options: {
  url: URL;
  address: ResolvedAddress;
  maxBytes: number;
  allowedContentTypes: readonly string[];
  signal: AbortSignal;
}): Promise<HopResult> {
  const { url, address, maxBytes, allowedContentTypes, signal } = options;
  const secure = url.protocol === "https:";
  const hostIsLiteral = parseAddress(normalizeHostName(url.hostname)) !== undefined;
  // Node's net layer asks this for the address instead of DNS: the answer is the checked one, so a
  // second resolution (DNS rebinding) cannot happen. Literal-IP hosts never reach a lookup at all.
  const pinnedLookup: LookupFunction = (_hostname, lookupOptions, callback) => {
    if ((lookupOptions as { all?: boolean }).all) {
      (callback as unknown as (error: null, addresses: ResolvedAddress[]) => void)(null, [address]);
    } else {
      callback(null, address.address, address.family);
    }
  };
  const requestOptions: https.RequestOptions = {
    protocol: url.protocol,
    host: hostIsLiteral ? address.address : normalizeHostName(url.hostname),
    port: url.port === "" ? (secure ? 443 : 80) : Number(url.port),
    path: `${url.pathname}${url.search}`,
    method: "GET",
    headers: {
      Host: url.host,
      "User-Agent": urlFetcherUserAgent,
      Accept: allowedContentTypes.join(", "),
      "Accept-Encoding": "identity",
    },
    lookup: pinnedLookup,
    agent: false,
    signal,
    ...(secure && !hostIsLiteral ? { servername: normalizeHostName(url.hostname) } : {}),
  };
  return new Promise<HopResult>((resolve, reject) => {
    const request = (secure ? https : http).request(requestOptions, (response) => {
      const status = response.statusCode ?? 0;
      const fail = (error: UrlFetchError) => {
        response.destroy();
        reject(error);
      };
      if ([301, 302, 303, 307, 308].includes(status)) {
        // The redirect's own body is never read: a slow or endless one must not hold the socket.
        response.destroy();
        const location = response.headers.location;
        if (!location) {
          fail(
            new UrlFetchError(`${url.href} redirected (${status}) without a Location header.`, {
              context: { url: url.href },
            }),
          );
          return;
        }
        resolve({ kind: "redirect", location });
        return;
      }
      if (status < 200 || status > 299) {
        fail(
          new UrlFetchError(
            `${url.href} answered HTTP ${status}; only a 2xx answer with the media is accepted.`,
            {
              code: "url_upstream_status",
              context: { url: url.href, upstreamStatus: status },
            },
          ),
        );
        return;
      }
      const encoding = (response.headers["content-encoding"] ?? "identity").toLowerCase();
      if (encoding !== "identity") {
        fail(
          new UrlFetchError(
            `${url.href} sent a ${encoding}-encoded body although identity was asked for; compressed bodies are refused.`,
            { status: 415, code: "url_content_type", context: { url: url.href, encoding } },
          ),
        );
        return;
      }
      const declared = parseMediaType(response.headers["content-type"]);
      if (declared === undefined || !isAllowedType(declared, allowedContentTypes)) {
        const got = response.headers["content-type"] ?? "no Content-Type";
        fail(
          new UrlFetchError(
            `${url.href} is ${JSON.stringify(got)}; expected one of: ${allowedContentTypes.join(", ")}.`,
            { status: 415, code: "url_content_type", context: { url: url.href, contentType: got } },
          ),
        );
        return;
      }
      const tooLarge = (seen: string) =>
        new UrlFetchError(
          `${url.href} is larger than the limit of ${maxBytes} bytes (${seen}). Use a smaller file or raise LOUPE_URL_MAX_BYTES.`,
          { status: 413, code: "url_too_large", context: { url: url.href, maxBytes } },
        );
      const declaredLength = Number(response.headers["content-length"]);
      if (Number.isFinite(declaredLength) && declaredLength > maxBytes) {
        fail(tooLarge(`Content-Length ${declaredLength}`));
        return;
      }
      const chunks: Buffer[] = [];
      let received = 0;
      response.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > maxBytes) {
          fail(tooLarge(`more than ${maxBytes} bytes received`));
          return;
        }
        chunks.push(chunk);
      });
      response.on("end", () => {
        if (!response.complete) {
          reject(
            new UrlFetchError(`${url.href} closed the connection before the body was complete.`, {
              context: { url: url.href },
            }),
          );
          return;
        }
        try {
          const bytes = Buffer.concat(chunks, received);
          const contentType = checkContent({ url: url.href, declared, bytes, allowed: allowedContentTypes });
          resolve({ kind: "body", bytes, contentType });
        } catch (error) {
          reject(error);
        }
      });
      response.on("error", reject);
    });
    request.on("error", reject);
    request.end();
  });
}

/**
 * Downloads a URL under Loupe's rules for hostile URLs (see the module comment).
 *
 * @throws {UrlFetchError} 400 for a malformed or refused URL (scheme, credentials, non-public address),
 * 413 for a body over `maxBytes`, 415 for a content type outside the allow-list or bytes that do not
 * match it, 422 for an unreachable host, an upstream error status, too many redirects, an empty body or
 * a fetch that did not finish within `timeoutMs`.
 */
export async function fetchUrl({
  url,
  maxBytes,
  timeoutMs,
  allowedContentTypes,
  allowHosts = [],
  maxRedirects = 3,
  lookup = systemLookup,
  signal,
}: FetchUrlOptions): Promise<FetchedUrl> {
  let allowList: AllowList;
  try {
    allowList = parseAllowHosts(allowHosts);
  } catch (error) {
    throw new UrlFetchError(`Invalid URL allow-list: ${(error as Error).message}.`, {
      status: 500,
      code: "config_invalid",
      cause: error,
    });
  }
  const deadline = AbortSignal.timeout(timeoutMs);
  const combined = signal ? AbortSignal.any([deadline, signal]) : deadline;
  const timedOut = () =>
    new UrlFetchError(
      `${shown(url)} did not finish within ${timeoutMs} ms (connect, headers and body together); slow or stalled servers are cut off. Use a faster host or raise LOUPE_URL_TIMEOUT_MS.`,
      { status: 422, code: "url_timeout", context: { url: shown(url), timeoutMs } },
    );
  // The lookup is raced against the deadline too: a resolver that hangs must not outlive the fetch.
  const withDeadline = <T>(promise: Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      if (combined.aborted) {
        reject(deadline.aborted ? timedOut() : combined.reason);
        return;
      }
      const onAbort = () => reject(deadline.aborted ? timedOut() : combined.reason);
      combined.addEventListener("abort", onAbort, { once: true });
      promise.then(resolve, reject).finally(() => combined.removeEventListener("abort", onAbort));
    });

  let current = checkUrl(url);
  const visited: string[] = [];
  for (let hop = 0; ; hop += 1) {
    visited.push(current.href);
    const address = await withDeadline(resolveChecked({ url: current, allowList, lookup }));
    let result: HopResult;
    try {
      result = await withDeadline(
        requestOnce({ url: current, address, maxBytes, allowedContentTypes, signal: combined }),
      );
    } catch (error) {
      if (error instanceof UrlFetchError) throw error;
      if (deadline.aborted) throw timedOut();
      if (signal?.aborted) throw signal.reason;
      throw new UrlFetchError(`${current.href} could not be fetched: ${(error as Error).message}.`, {
        code: "url_unreachable",
        cause: error,
        context: { url: current.href },
      });
    }
    if (result.kind === "body") {
      return {
        bytes: result.bytes as Buffer,
        contentType: result.contentType as string,
        finalUrl: current.href,
      };
    }
    if (hop >= maxRedirects) {
      throw new UrlFetchError(
        `${shown(url)} redirected more than ${maxRedirects} times (${visited.map(shown).join(" → ")} → …); at most ${maxRedirects} redirects are followed.`,
        { code: "url_too_many_redirects", context: { url: shown(url), visited } },
      );
    }
    current = checkUrl(result.location as string, current);
  }
}
