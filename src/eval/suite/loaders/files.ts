/**
 * What every suite loader needs from files: reading JSON and JSON Lines with errors that name the file,
 * the line and the field; zod issues written for people; and paths from suite files kept inside the
 * folder they are resolved against (a suite file is data, and data does not get to point at /etc), with
 * the files they name checked all at once.
 */
import { readFile, stat } from "node:fs/promises";
import { isAbsolute, relative, resolve, sep } from "node:path";
import type { z } from "zod";
import { ValidationError } from "../../../errors.ts";

/** Where a value sits, for error messages: a file and optionally a line. */
export interface Place {
  file: string;
  line?: number;
}

/** `file line 3` or `file`. */
export function describePlace(place: Place): string {
  return place.line === undefined ? place.file : `${place.file} line ${place.line}`;
}

function fieldName(path: readonly PropertyKey[]): string {
  let name = "";
  for (const part of path) {
    if (typeof part === "number") name += `[${part}]`;
    else name += name === "" ? String(part) : `.${String(part)}`;
  }
  return name;
}

/**
 * One sentence per zod issue: the field, what was wrong, and for unknown fields the fields allowed there.
 *
 * @param allowedFields Fields allowed in the object at the root of the value (for unknown-field issues).
 */
export function formatIssues(issues: readonly z.core.$ZodIssue[], allowedFields?: readonly string[]): string {
  return issues
    .map((issue) => {
      const field = fieldName(issue.path);
      if (issue.code === "unrecognized_keys") {
        const where = field === "" ? "" : ` in ${field}`;
        const allowed =
          field === "" && allowedFields !== undefined ? `; allowed fields: ${allowedFields.join(", ")}` : "";
        return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((key) => JSON.stringify(key)).join(", ")}${where}${allowed}`;
      }
      return `field ${JSON.stringify(field === "" ? "(root)" : field)}: ${issue.message}`;
    })
    .join("; ");
}

/** Parses `value` with `schema`, or throws a ValidationError naming the place and every bad field. */
export function parseAt<Schema extends z.ZodType>({
  schema,
  value,
  place,
  allowedFields,
}: {
  schema: Schema;
  value: unknown;
  place: Place;
  allowedFields?: readonly string[];
}): z.output<Schema> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new ValidationError(`${describePlace(place)}: ${formatIssues(parsed.error.issues, allowedFields)}.`, {
    context: { ...place, issues: parsed.error.issues },
  });
}

/** A failure at a place, with the offending value and what is allowed written into `message`. */
export function failAt(place: Place, message: string, context: Record<string, unknown> = {}): never {
  throw new ValidationError(`${describePlace(place)}: ${message}`, { context: { ...place, ...context } });
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a folder" : "cannot be read";
    throw new ValidationError(`${what} ${file} ${reason}; give the path of the ${what.toLowerCase()}.`, {
      cause: error,
      context: { file },
    });
  }
}

/** Reads and parses a JSON file; a missing file or bad JSON is a ValidationError naming the file. */
export async function readJsonFile({ file, what }: { file: string; what: string }): Promise<unknown> {
  const text = await readText(file, what);
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ValidationError(`${what} ${file} is not valid JSON (${(error as Error).message}).`, {
      cause: error,
      context: { file },
    });
  }
}

/** Reads a JSON file and parses it with `schema`; errors name the file and, for a bad value, every bad field. */
export async function parseJsonFile<Schema extends z.ZodType>({
  file,
  what,
  schema,
}: {
  file: string;
  what: string;
  schema: Schema;
}): Promise<z.output<Schema>> {
  return parseAt({ schema, value: await readJsonFile({ file, what }), place: { file } });
}

/** One parsed line of a JSON Lines file, numbered from 1 as editors number them. */
export interface JsonLine {
  line: number;
  value: unknown;
}

/**
 * Reads a JSON Lines file: one JSON value per line, blank lines skipped. A line that is not JSON is a
 * ValidationError naming the line.
 */
export async function readJsonLines({ file, what }: { file: string; what: string }): Promise<JsonLine[]> {
  const text = await readText(file, what);
  const lines: JsonLine[] = [];
  text.split(/\r?\n/u).forEach((raw, index) => {
    if (raw.trim() === "") return;
    const line = index + 1;
    try {
      lines.push({ line, value: JSON.parse(raw) as unknown });
    } catch (error) {
      failAt(
        { file, line },
        `not valid JSON (${(error as Error).message}); each line must be one JSON object.`,
      );
    }
  });
  return lines;
}

/**
 * Resolves a relative path from a suite file against `root`, refusing absolute paths and paths that
 * leave `root`.
 */
export function resolveInside({
  root,
  path,
  place,
  field,
}: {
  root: string;
  path: string;
  place: Place;
  field: string;
}): string {
  if (path.length === 0 || path.includes("\0") || isAbsolute(path) || /^[A-Za-z]:[\\/]/u.test(path)) {
    failAt(
      place,
      `field ${JSON.stringify(field)}: path ${JSON.stringify(path)} is not allowed; give a path relative to ${root}.`,
      { path },
    );
  }
  const resolved = resolve(root, path);
  const inside = relative(root, resolved);
  if (inside === "" || inside === ".." || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
    failAt(
      place,
      `field ${JSON.stringify(field)}: path ${JSON.stringify(path)} leaves ${root}; give a path inside that folder.`,
      { path },
    );
  }
  return resolved;
}

/** A file a suite refers to, and where the reference was made. */
export interface FileReference {
  path: string;
  place: Place;
  field: string;
}

/**
 * Checks that every referenced file exists and is a regular file; the error names the first missing
 * one and how many are missing.
 */
export async function checkFilesExist(references: readonly FileReference[]): Promise<void> {
  const unique = [...new Map(references.map((reference) => [reference.path, reference])).values()];
  const missing: FileReference[] = [];
  const batch = 64;
  for (let start = 0; start < unique.length; start += batch) {
    const results = await Promise.all(
      unique.slice(start, start + batch).map(async (reference) => {
        try {
          return (await stat(reference.path)).isFile() ? null : reference;
        } catch {
          return reference;
        }
      }),
    );
    for (const result of results) if (result !== null) missing.push(result);
  }
  const [first] = missing;
  if (first === undefined) return;
  const more = missing.length > 1 ? ` (${missing.length} files are missing in all)` : "";
  failAt(
    first.place,
    `field ${JSON.stringify(first.field)}: file ${first.path} does not exist or is not a file${more}; put the files beside the suite or fix the paths.`,
    { path: first.path, missing: missing.length },
  );
}

/** The files a suite refers to, gathered while it loads; see {@link referencedFiles}. */
export interface ReferencedFiles {
  /** Resolves `path` inside the root (see {@link resolveInside}), notes where it was named, and returns it. */
  add: (reference: FileReference) => string;
  /** Checks every file added so far (see {@link checkFilesExist}). */
  checkExist: () => Promise<void>;
}

/**
 * Gathers the files a suite refers to, resolved inside `root`, so that a loader can check them all
 * at once when the suite is read.
 */
export function referencedFiles({ root }: { root: string }): ReferencedFiles {
  const references: FileReference[] = [];
  return {
    add: ({ path, place, field }) => {
      const resolved = resolveInside({ root, path, place, field });
      references.push({ path: resolved, place, field });
      return resolved;
    },
    checkExist: () => checkFilesExist(references),
  };
}
