/** The 429 of the limits: a caller's bucket is empty, or its tenant runs as many heavy requests as allowed. */
import { AppError, type AppErrorOptions } from "../../errors.ts";

/** Codes of {@link TooManyRequestsError}. */
export type TooManyRequestsCode = "rate_limited" | "too_many_concurrent_requests";

/** A call refused by a limit; `retryAfterSeconds` is what the `Retry-After` header says. */
export class TooManyRequestsError extends AppError {
  declare readonly retryAfterSeconds: number;

  constructor(
    message: string,
    options: AppErrorOptions & { code: TooManyRequestsCode; retryAfterSeconds: number },
  ) {
    super(options.code, 429, message, {
      ...options,
      context: { ...options.context, retryAfterSeconds: options.retryAfterSeconds },
    });
  }
}
