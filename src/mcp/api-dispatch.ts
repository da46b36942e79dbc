/**
 * How MCP tools reach Loupe: each tool call is one request to the route of the HTTP API that does the
 * same work (`search` → `POST /v1/search`, …), sent to the app in this process with the caller's
 * credentials. So a tool is held to exactly what its route is held to — validation, the key's scope
 * and tenant, the rate-limit cost, the heavy-request slots, the body limits, the audit trail — and
 * nothing about it can drift from the API it mirrors.
 */

/** Something that answers a Fetch `Request`: the app's `fetch`, or a fetch to a server. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** One request to the HTTP API. */
export interface ApiCall {
  method: "GET" | "POST";
  /** A path of the API, e.g. `/v1/search`. */
  path: string;
  /** Query parameters; undefined ones are left out. */
  query?: Record<string, string | undefined>;
  /** A JSON body. */
  body?: unknown;
  /** Cancels the request (the MCP client cancelled the call, or went away). */
  signal?: AbortSignal;
}

/** Sends one request to the HTTP API and returns its answer as is. */
export type ApiDispatch = (call: ApiCall) => Promise<Response>;

/** Options of {@link createApiDispatch}. */
export interface ApiDispatchOptions {
  /** Where requests go. */
  fetch: FetchHandler;
  /** The origin requests are addressed to, e.g. `http://localhost`. */
  baseUrl: string;
  /** Headers every request carries: the caller's credentials, Host and Origin. */
  headers?: Headers;
  /** Cancels every request (the MCP request they serve went away). */
  signal?: AbortSignal;
}

/** A dispatcher that turns each {@link ApiCall} into a Fetch `Request` for `fetch`. */
export function createApiDispatch({ fetch, baseUrl, headers, signal }: ApiDispatchOptions): ApiDispatch {
  return async ({ method, path, query, body, signal: callSignal }) => {
    const url = new URL(path, baseUrl);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, value);
    }
    const requestHeaders = new Headers(headers);
    requestHeaders.set("accept", "application/json");
    if (body !== undefined) requestHeaders.set("content-type", "application/json");
    const signals = [signal, callSignal].filter((value): value is AbortSignal => value !== undefined);
    return fetch(
      new Request(url, {
        method,
        headers: requestHeaders,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signals.length === 0 ? {} : { signal: AbortSignal.any(signals) }),
      }),
    );
  };
}

/**
 * The headers of an MCP request that decide who its tool calls act as and where they were sent:
 * the API key (either header), `Host` (the DNS-rebinding check) and `Origin` (the web-origin check),
 * and the client's `User-Agent` for the log. Nothing else of the MCP request is passed on.
 */
export const FORWARDED_HEADERS = ["authorization", "x-api-key", "host", "origin", "user-agent"] as const;

/** The {@link FORWARDED_HEADERS} of `request`, and the request id its tool calls are logged under. */
export function forwardedHeaders(request: Request, requestId: string): Headers {
  const headers = new Headers();
  for (const name of FORWARDED_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  headers.set("x-request-id", requestId);
  return headers;
}
