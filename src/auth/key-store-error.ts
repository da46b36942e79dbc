/** Failures of the API key store, each with a code and an HTTP status for the layers above. */
import { AppError, type AppErrorOptions } from "../errors.ts";

/** Why a key store call failed. */
export type KeyStoreErrorCode =
  /** No key with that id (for the caller's tenant). 404. */
  | "key_not_found"
  /** What was asked for a new key is not allowed (scopes, tenant, origins, expiry, name). 400. */
  | "invalid_key_request"
  /** The store's file is unreadable, malformed, or its keys were made with another secret. 500. */
  | "key_store_invalid"
  /** Another process held the store's lock too long. 503. */
  | "key_store_busy";

const statusByCode: Record<KeyStoreErrorCode, number> = {
  key_not_found: 404,
  invalid_key_request: 400,
  key_store_invalid: 500,
  key_store_busy: 503,
};

/** A key store call failed; the message says what and how to fix it. */
export class KeyStoreError extends AppError {
  constructor(code: KeyStoreErrorCode, message: string, options: AppErrorOptions = {}) {
    super(code, statusByCode[code], message, options);
  }
}
