/**
 * Inputs the `loupe` subcommands share: the `--filter` JSON, image files given by path, and the error
 * for a server that `--url` names but that cannot be reached. One wording for every command.
 */
import { readFile } from "node:fs/promises";
import { InvalidArgumentError } from "commander";
import { AppError, ValidationError } from "../errors.ts";

/**
 * Parses `--filter` (JSON text); `undefined` when the option was not given.
 *
 * @throws ValidationError with an example when the text is not JSON.
 */
export function parseFilterOption(filter: string | undefined): unknown {
  if (filter === undefined) return undefined;
  try {
    return JSON.parse(filter);
  } catch {
    throw new ValidationError(
      `--filter must be JSON, e.g. '[{"field":"metadata.tags","op":"contains","value":"red"}]'; got ${JSON.stringify(filter.slice(0, 80))}.`,
    );
  }
}

/**
 * Reads an image file given on the command line.
 *
 * @throws ValidationError naming the path and why it could not be read.
 */
export async function readImageFile(imagePath: string): Promise<Buffer> {
  try {
    return await readFile(imagePath);
  } catch (error) {
    throw new ValidationError(`Cannot read the image ${imagePath}: ${(error as Error).message}.`, {
      cause: error,
    });
  }
}

/** The error for a `--url` server that could not be reached; `doing` completes "drop --url to … in-process". */
export function serverUnreachable({
  url,
  error,
  doing,
}: {
  url: string;
  error: unknown;
  doing: string;
}): AppError {
  return new AppError(
    "server_unreachable",
    503,
    `Cannot reach Loupe at ${url} (${error instanceof Error ? error.message : String(error)}). Start it with \`loupe serve\`, or drop --url to ${doing} in-process.`,
    { cause: error },
  );
}

/**
 * A commander argument parser for a whole-number flag: plain decimal digits, a safe integer within
 * `[min, max]`; anything else is refused with a message naming the flag, the range and the value given.
 */
export function wholeNumber(flag: string, { min = 0, max }: { min?: number; max?: number } = {}) {
  const range = max !== undefined ? ` from ${min} to ${max}` : min > 0 ? ` of at least ${min}` : "";
  return (value: string): number => {
    const parsed = Number(value.trim());
    const inRange = parsed >= min && (max === undefined || parsed <= max);
    if (!/^\d{1,16}$/.test(value.trim()) || !Number.isSafeInteger(parsed) || !inRange) {
      throw new InvalidArgumentError(`${flag} takes a whole number${range}; got "${value}".`);
    }
    return parsed;
  };
}

/** A comma-separated flag value as its non-empty, trimmed items (`"image, segment"` → two items). */
export function listOption(value: string | undefined): string[] | undefined {
  return value
    ?.split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}
