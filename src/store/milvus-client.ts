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
  if (!isSuccess(status)) {
    throw new StoreError(
      `Milvus refused ${what}: ${status.reason || `error code ${String(status.error_code ?? status.code)}`}.`,
      {
        code: "store_rejected",
        status: 500,
        context: { what, code: status.code, errorCode: status.error_code, reason: status.reason },
      },
    );
  }
  return response;
}

const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

/** Turns whatever the SDK threw (an Error, a gRPC error, or a bare status object) into a StoreError. */
export function toStoreError(error: unknown, what: string, address?: string): StoreError {
  if (error instanceof StoreError) return error;
  const where = address === undefined ? "Milvus" : `Milvus at ${address}`;
  const grpcCode =
    typeof error === "object" && error !== null && "code" in error ? Number(error.code) : undefined;
  if (error instanceof Error && grpcCode === GRPC_UNAVAILABLE) {
    return new StoreError(
      `${where} is unreachable (${what}): ${error.message}. Check that it is running and the address is right.`,
      {
        code: "store_unavailable",
        cause: error,
        context: { what, address },
      },
    );
  }
  if (error instanceof Error && grpcCode === GRPC_DEADLINE_EXCEEDED) {
    return new StoreError(`${where} did not answer ${what} before the deadline: ${error.message}.`, {
      code: "store_timeout",
      cause: error,
      context: { what, address },
    });
  }
  if (error instanceof Error) {
    return new StoreError(`${what} failed against ${where}: ${error.message}`, {
      cause: error,
      context: { what, address },
    });
  }
  if (isStatusLike(error)) {
    return new StoreError(
      `Milvus refused ${what}: ${error.reason || `error code ${String(error.error_code ?? error.code)}`}.`,
      {
        code: "store_rejected",
        status: 500,
        context: { what, code: error.code, errorCode: error.error_code, reason: error.reason },
      },
    );
  }
  return new StoreError(`${what} failed against ${where}: ${String(error)}`, {
    cause: error,
    context: { what, address },
  });
}

/** Options of {@link callMilvus}. */
export interface CallMilvusOptions<T> {
  /** What the call does, for error messages ("search loupe_images"). */
  what: string;
  /** Hard deadline of the whole call, retries included. */
  timeoutMs: number;
  /** The SDK call. */
  call: () => Promise<T>;
  /** Address, for error messages. */
  address?: string;
  /** Skip the status check, for calls whose failure statuses the caller interprets itself. */
  unchecked?: boolean;
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
}: CallMilvusOptions<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const where = address === undefined ? "Milvus" : `Milvus at ${address}`;
      reject(
        new StoreError(`${where} did not answer ${what} within ${timeoutMs} ms.`, {
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
