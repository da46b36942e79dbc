/**
 * The Milvus SDK client, made once per store, and the checks every call goes through: a hard deadline,
 * SDK throws turned into {@link StoreError}, and a success status required on every response.
 */
import { MilvusClient } from "@zilliz/milvus2-sdk-node";
import { StoreError } from "../errors.ts";

/** Options of {@link createMilvusClient}. */
export interface MilvusConnectionOptions {
  /** `host:port`, `http://host:port`, or `https://host:port` (TLS). */
  address: string;
  /** `user:password` or an API key, for a Milvus with authentication. */
  token?: string;
  /** Milvus database; the server's `default` when absent. */
  database?: string;
  /** Use TLS; defaults to true for an `https://` address. */
  tls?: boolean;
  /** Deadline of each call, in milliseconds. */
  timeoutMs?: number;
}

/** Default deadline of one Milvus call. */
export const DEFAULT_MILVUS_TIMEOUT_MS = 10_000;
/**
 * Default deadline of calls whose work grows with the rows they touch (a filtered count, a flush, an
 * exact scan of a filtered set): Milvus Lite evaluates them in Python, one row at a time.
 */
export const DEFAULT_MILVUS_LONG_TIMEOUT_MS = 120_000;

/**
 * Creates a client for one Milvus (or Milvus Lite) server. Nothing is sent until the first call; an
 * unreachable server surfaces as a {@link StoreError} from that call, within the deadline.
 */
export function createMilvusClient({
  address,
  token,
  database,
  tls = address.startsWith("https://"),
  timeoutMs = DEFAULT_MILVUS_TIMEOUT_MS,
}: MilvusConnectionOptions): MilvusClient {
  const client = new MilvusClient({
    address,
    token,
    database,
    ssl: tls,
    timeout: timeoutMs,
    // The SDK retries UNAVAILABLE with a fresh deadline per attempt; one retry rides over a blip
    // without multiplying the time an unreachable server takes to fail.
    maxRetries: 1,
    // The SDK logs through its own console logger, at debug level (request bodies included) whenever
    // NODE_ENV is "test"; Loupe logs through pino, so only the SDK's warnings are let through.
    logLevel: "warn",
    // Heartbeats to Milvus's telemetry service: not needed, and Milvus Lite does not implement it.
    telemetry: { enabled: false },
  });
  // The SDK starts a handshake in the constructor and keeps its promise; when the server is down that
  // promise rejects with nobody awaiting it, which would crash Node. Calls report the failure instead.
  client.connectPromise.catch(() => undefined);
  return client;
}

interface StatusLike {
  code?: number | string;
  error_code?: number | string;
  reason?: string;
}

function isStatusLike(value: unknown): value is StatusLike {
  return typeof value === "object" && value !== null && ("error_code" in value || "code" in value);
}

/** The status of an SDK response: the response itself for status-only replies, else its `status`. */
function statusOf(response: unknown): StatusLike | undefined {
  if (typeof response !== "object" || response === null) return undefined;
  if ("status" in response && isStatusLike(response.status)) return response.status;
  if (isStatusLike(response)) return response;
  return undefined;
}

function isSuccess(status: StatusLike): boolean {
  const code = Number(status.code ?? 0);
  const errorCode = status.error_code;
  return code === 0 && (errorCode === undefined || errorCode === "Success" || Number(errorCode) === 0);
}

/** Numeric Milvus error code of a failed response (e.g. 700 when an index does not exist). */
export function statusCode(response: unknown): number | undefined {
  const status = statusOf(response);
  if (status === undefined) return undefined;
  const code = Number(status.code);
  return Number.isFinite(code) ? code : undefined;
}

const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

/** Where a withheld address stood in a message. */
const WITHHELD = "[address withheld]";

/**
 * `text` without the network addresses the SDK and Milvus write into messages (URLs, `host:port`, IPv4
 * and IPv6 addresses): a caller learns what failed, never where the store lives. The full text stays in
 * the error's context, which only the log sees.
 */
export function redactAddresses(text: string): string {
  return text
    .replace(/\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s'"<>,;)]*[^\s'"<>,;):.]/g, WITHHELD)
    .replace(/\[[0-9A-Fa-f:.%A-Za-z]*:[0-9A-Fa-f:.%A-Za-z]*\](?::\d{1,5})?/g, WITHHELD)
    .replace(/(?<![\w.:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])/g, (match) =>
      /[0-9A-Fa-f]/.test(match) && match.split(":").length >= 3 ? WITHHELD : match,
    )
    .replace(/\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b/g, WITHHELD)
    .replace(/\b[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*:\d{1,5}\b/g, WITHHELD);
}

/** The caller-facing text of an SDK message: addresses withheld, and capped in length. */
function sdkDetail(message: string): string {
  const redacted = redactAddresses(message).replace(/\s+/g, " ").trim();
  return redacted.length > 300 ? `${redacted.slice(0, 300)}…` : redacted;
}

function refusal(what: string, status: StatusLike): StoreError {
  const reason = status.reason || `error code ${String(status.error_code ?? status.code)}`;
  return new StoreError(`Milvus refused ${what}: ${sdkDetail(reason).replace(/\.$/, "")}.`, {
    code: "store_rejected",
    status: 500,
    context: { what, code: status.code, errorCode: status.error_code, reason: status.reason },
  });
}

/**
 * Throws a {@link StoreError} unless `response` carries a success status. A response without any
 * status counts as a failure: Milvus Lite answers calls it does not implement with an empty reply.
 */
export function assertOk<T>(response: T, what: string): T {
  const status = statusOf(response);
  if (status === undefined) {
    throw new StoreError(
      `Milvus answered ${what} without a status; the server does not implement this call (Milvus Lite answers unimplemented calls with an empty reply).`,
      { code: "store_unsupported", status: 500, context: { what } },
    );
  }
  if (!isSuccess(status)) throw refusal(what, status);
  return response;
}

/**
 * Turns whatever the SDK threw (an Error, a gRPC error, or a bare status object) into a StoreError.
 * Messages say what failed without the server's address or the SDK's own text (which names it); both
 * are kept in the context (`address`, `detail`) for the log.
 */
export function toStoreError(error: unknown, what: string, address?: string): StoreError {
  if (error instanceof StoreError) return error;
  const grpcCode =
    typeof error === "object" && error !== null && "code" in error ? Number(error.code) : undefined;
  const detail = error instanceof Error ? error.message : String(error);
  if (error instanceof Error && grpcCode === GRPC_UNAVAILABLE) {
    return new StoreError(
      `Milvus is unreachable (${what}). Check that it is running and that MILVUS_ADDRESS is right; the server log has the details.`,
      { code: "store_unavailable", cause: error, context: { what, address, detail } },
    );
  }
  if (error instanceof Error && grpcCode === GRPC_DEADLINE_EXCEEDED) {
    return new StoreError(`Milvus did not answer ${what} before the deadline (MILVUS_TIMEOUT_MS).`, {
      code: "store_timeout",
      cause: error,
      context: { what, address, detail },
    });
  }
  if (isStatusLike(error)) return refusal(what, error);
  return new StoreError(`${capitalize(what)} failed in Milvus: ${sdkDetail(detail).replace(/\.$/, "")}.`, {
    cause: error,
    context: { what, address, detail },
  });
}

function capitalize(text: string): string {
  return text.length === 0 ? text : `${text[0]?.toUpperCase()}${text.slice(1)}`;
}

/** Options of {@link callMilvus}. */
export interface CallMilvusOptions<T> {
  /** What the call does, for error messages ("search loupe_images"). */
  what: string;
  /** Hard deadline of the whole call, retries included. */
  timeoutMs: number;
  /** The SDK call. */
  call: () => Promise<T>;
  /** Address, for the log (kept in the error's context, never in its message). */
  address?: string;
  /** Skip the status check, for calls whose failure statuses the caller interprets itself. */
  unchecked?: boolean;
  /** The setting that sets `timeoutMs`, named in the timeout error. */
  timeoutSetting?: string;
}

/**
 * Runs one SDK call under a hard deadline and checks its status. The SDK's own deadline is per attempt
 * and some calls (insert, upsert) default to none; this bound holds whatever the SDK does.
 *
 * @throws StoreError when the call throws, times out or answers without success.
 */
export async function callMilvus<T>({
  what,
  timeoutMs,
  call,
  address,
  unchecked = false,
  timeoutSetting = "MILVUS_TIMEOUT_MS",
}: CallMilvusOptions<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(
        new StoreError(`Milvus did not answer ${what} within ${timeoutMs} ms (${timeoutSetting}).`, {
          code: "store_timeout",
          context: { what, address, timeoutMs },
        }),
      );
    }, timeoutMs);
  });
  try {
    const response = await Promise.race([call(), deadline]);
    return unchecked ? response : assertOk(response, what);
  } catch (error) {
    throw toStoreError(error, what, address);
  } finally {
    clearTimeout(timer);
  }
}
