/**
 * What every key store adapter checks of a new key before making it (tenant, scopes, origins, name, rate
 * limit, expiry): one set of rules and messages, whichever store keeps the key.
 */
import { KEY_SCOPES, type KeyScope, type NewApiKey } from "./key-store.ts";
import { KeyStoreError } from "./key-store-error.ts";
import { normalizeOrigin } from "./origins.ts";

/** Most origins a key may list. */
export const MAX_ORIGINS = 50;
/** Longest key name, in characters. */
export const MAX_NAME = 100;
/** Highest rate (per second) and burst a key's own limit may set. */
export const MAX_RATE = 1_000_000;

/** A new key's request as a store keeps it. */
export interface CheckedKeyRequest {
  publishable: boolean;
  scopes: KeyScope[];
  origins: string[];
  name: string | null;
}

/**
 * Checks a new key's request, naming every problem at once.
 * @throws KeyStoreError `invalid_key_request` listing what is wrong and what is allowed.
 */
export function checkKeyRequest(
  input: NewApiKey,
  { tenantPattern, now }: { tenantPattern: RegExp; now: () => Date },
): CheckedKeyRequest {
  const problems: string[] = [];
  if (typeof input.tenant !== "string" || !tenantPattern.test(input.tenant)) {
    problems.push(
      `tenant ${JSON.stringify(input.tenant)} is not allowed; use 1–128 characters from letters, digits and _.@:-`,
    );
  }
  const publishable = input.publishable === true;
  let scopes: KeyScope[];
  if (publishable) {
    if (input.scopes?.some((scope) => scope !== "read")) {
      problems.push(
        `a publishable key is read-only (chat, media, models); leave out scopes ${input.scopes.filter((scope) => scope !== "read").join(",")}`,
      );
    }
    scopes = ["read"];
  } else {
    const given = input.scopes ?? [];
    const unknown = given.filter((scope) => !KEY_SCOPES.includes(scope));
    if (given.length === 0) problems.push(`scopes are required; choose from ${KEY_SCOPES.join(", ")}`);
    if (unknown.length > 0) {
      problems.push(
        `scopes ${unknown.map((scope) => JSON.stringify(scope)).join(", ")} are not scopes; choose from ${KEY_SCOPES.join(", ")}`,
      );
    }
    scopes = KEY_SCOPES.filter((scope) => given.includes(scope));
  }
  const origins: string[] = [];
  for (const origin of input.origins ?? []) {
    const normalized = normalizeOrigin(origin);
    if (normalized === undefined) {
      problems.push(
        `origin ${JSON.stringify(origin.slice(0, 100))} is not an origin; write scheme://host[:port], e.g. https://app.example.com`,
      );
    } else if (!origins.includes(normalized)) {
      origins.push(normalized);
    }
  }
  if (origins.length > MAX_ORIGINS) problems.push(`at most ${MAX_ORIGINS} origins may be listed`);
  if (publishable && (input.origins ?? []).length === 0) {
    problems.push(
      "a publishable key needs the origins it may be used from (--origins https://app.example.com)",
    );
  }
  const name = input.name?.trim();
  if (name !== undefined && (name.length === 0 || name.length > MAX_NAME || /\p{Cc}/u.test(name))) {
    problems.push(`name must be 1–${MAX_NAME} printable characters`);
  }
  if (
    input.rateLimit !== undefined &&
    !(
      Number.isFinite(input.rateLimit.perSecond) &&
      input.rateLimit.perSecond > 0 &&
      input.rateLimit.perSecond <= MAX_RATE &&
      Number.isInteger(input.rateLimit.burst) &&
      input.rateLimit.burst >= 1 &&
      input.rateLimit.burst <= MAX_RATE
    )
  ) {
    problems.push(`a rate limit is 0 < perSecond ≤ ${MAX_RATE} and a whole burst of 1–${MAX_RATE}`);
  }
  if (input.expiresAt !== undefined) {
    const at = input.expiresAt.getTime();
    if (!Number.isFinite(at) || at <= now().getTime()) problems.push("expiry must be in the future");
  }
  if (problems.length > 0) {
    throw new KeyStoreError("invalid_key_request", `The key cannot be made: ${problems.join("; ")}.`);
  }
  return { publishable, scopes, origins, name: name ?? null };
}
