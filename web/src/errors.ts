/**
 * Turns a failed request into a sentence a person understands, and says whether retrying can help.
 * Pure: the HTTP status, the error envelope's `code` and whether the request reached the server at all
 * are all it needs.
 */
import { format, type Strings } from "./i18n.ts";

/** What is known about a failure. */
export interface FailureFacts {
  /** HTTP status; absent when no answer came (network, CORS refusal). */
  status?: number;
  /** The envelope's `error.code`, if any. */
  code?: string;
  /** The envelope's `error.message`, shown only for a 400 (it names what to fix). */
  message?: string;
  /** No answer came and the server could not be reached at all. */
  offline?: boolean;
  /** No answer came although the server is reachable: the browser refused the call (CORS, origin). */
  refused?: boolean;
}

/** A failure as shown: the sentence and whether to offer retry. */
export interface Failure {
  sentence: string;
  retryable: boolean;
}

/** The sentence for a failure, in the table's language. */
export function describeFailure(facts: FailureFacts, strings: Strings): Failure {
  const { status, code } = facts;
  if (facts.refused || status === 401 || status === 403 || code === "origin_not_allowed") {
    return { sentence: strings.errorNotAllowed, retryable: false };
  }
  if (status === 429) return { sentence: strings.errorTooMany, retryable: true };
  if (status === 413) return { sentence: strings.errorTooLarge, retryable: false };
  if (facts.offline || status === undefined) return { sentence: strings.errorOffline, retryable: true };
  if (status === 503 || status === 502 || status === 504)
    return { sentence: strings.errorBusy, retryable: true };
  if (status === 404) return { sentence: strings.errorNotFound, retryable: false };
  if (status === 400 || status === 415 || status === 422) {
    const message = (facts.message ?? "").slice(0, 300);
    return { sentence: format(strings.errorInvalid, { message }), retryable: false };
  }
  return { sentence: strings.errorOther, retryable: true };
}
