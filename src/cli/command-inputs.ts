/**
 * Inputs the `loupe` subcommands share: the `--filter` JSON, image files given by path, whole-number
 * and list flags. One wording for every command.
 */
import { InvalidArgumentError } from "commander";
import { readUpload, type Upload } from "../client/index.ts";
import { ValidationError } from "../errors.ts";

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
 * Reads an image file given on the command line, as an upload named after the file.
 *
 * @throws ValidationError naming the path and why it could not be read.
 */
export async function readImageFile(imagePath: string): Promise<Upload> {
  try {
    return await readUpload(imagePath);
  } catch (error) {
    throw new ValidationError(`Cannot read the image ${imagePath}: ${(error as Error).message}.`, {
      cause: error,
    });
  }
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
