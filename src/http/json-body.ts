/**
 * Reading a JSON request body that must be one object: the two ways it can be wrong get one message
 * each, the same on every route.
 */
import { ValidationError } from "../errors.ts";
import type { AppContext } from "./context.ts";

/**
 * The request body parsed as a JSON object.
 *
 * @throws ValidationError when the body is not JSON, or is JSON but not an object.
 */
export async function readJsonObject(c: AppContext): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new ValidationError("The request body is not valid JSON.");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ValidationError("The request body must be a JSON object.");
  }
  return body as Record<string, unknown>;
}
