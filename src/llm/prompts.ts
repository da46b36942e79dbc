/**
 * Versioned prompt files (`prompts/<id>.v<version>.md`): loaded and checked once at start-up, then
 * filled per request. A file holds front matter (`id`, `version`, `description`, `variables`) and two
 * sections, `## system` and `## user`, with `{{variable}}` placeholders. `prompts/README.md` documents
 * the format for people who write prompts; this module enforces it so that a broken prompt stops
 * start-up instead of silently sending the model a half-filled message.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { ConfigError } from "../errors.ts";

/** One version of one prompt, parsed and checked. */
export interface PromptTemplate {
  id: string;
  version: number;
  description: string;
  /** Placeholders the prompt uses, as declared in its front matter. */
  variables: readonly string[];
  /** The text of `## system`, trimmed. */
  system: string;
  /** The text of `## user`, trimmed. */
  user: string;
  /** Absolute path of the file it came from (for messages and logs). */
  file: string;
}

/** The prompts of one directory, the highest version of each id in use. */
export interface PromptSet {
  /** Ids present, sorted. */
  readonly ids: readonly string[];
  /**
   * The highest version of prompt `id`.
   *
   * @throws {ConfigError} when no file has that id.
   */
  get(id: string): PromptTemplate;
  /** Every version of every prompt, by id then version (older versions are checked too). */
  readonly all: readonly PromptTemplate[];
}

/** Options of {@link loadPrompts}. */
export interface LoadPromptsOptions {
  /** Directory of `<id>.v<version>.md` files (`LOUPE_PROMPTS_DIR`). */
  dir: string;
  /**
   * Prompt ids the code uses, each with the variables the code fills. Each must be present, and every
   * version of it must declare exactly these variables.
   */
  required?: Readonly<Record<string, readonly string[]>>;
}

const fileNamePattern = /^([A-Za-z0-9_-]+)\.v([1-9][0-9]{0,5})\.md$/;
const idPattern = /^[A-Za-z0-9_-]+$/;
const variablePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A well-formed placeholder; whitespace inside the braces is allowed. */
const placeholderPattern = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;
const frontMatterKeys = ["id", "version", "description", "variables"] as const;
const sectionNames = ["system", "user"] as const;

/**
 * Loads every `*.md` prompt in `dir` (except `README.md`) and checks each one: the file name matches
 * its `id` and `version`, the front matter has exactly the known keys, both sections are present, every
 * placeholder is declared and every declared variable is used, and each prompt in `required` declares
 * exactly the variables the code fills. When several versions of an id exist the highest is used.
 *
 * @throws {ConfigError} naming the file, what is wrong and how to fix it.
 */
export async function loadPrompts({ dir, required = {} }: LoadPromptsOptions): Promise<PromptSet> {
  const absoluteDir = path.resolve(dir);
  const isDirectory = await stat(absoluteDir).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
  if (!isDirectory) {
    throw new ConfigError(
      `The prompts directory ${absoluteDir} does not exist or is not a directory. Set LOUPE_PROMPTS_DIR to a directory of prompt files (the repository's prompts/ holds the defaults).`,
      { context: { promptsDir: absoluteDir } },
    );
  }
  const names = (await readdir(absoluteDir))
    .filter((name) => name.toLowerCase().endsWith(".md") && name.toLowerCase() !== "readme.md")
    .sort();

  const all: PromptTemplate[] = [];
  for (const name of names) {
    const file = path.join(absoluteDir, name);
    const text = await readFile(file, "utf8");
    all.push(parsePrompt({ file, text }));
  }

  for (const [id, variables] of Object.entries(required)) {
    const versions = all.filter((prompt) => prompt.id === id);
    if (versions.length === 0) {
      throw new ConfigError(
        `The prompts directory ${absoluteDir} has no prompt "${id}", which Loupe needs. Add ${id}.v1.md (see prompts/README.md for the format) or point LOUPE_PROMPTS_DIR at a directory that has it.`,
        { context: { promptsDir: absoluteDir, id } },
      );
    }
    for (const prompt of versions) checkRequiredVariables({ prompt, variables });
  }

  all.sort((a, b) => (a.id === b.id ? a.version - b.version : a.id < b.id ? -1 : 1));
  const latest = new Map<string, PromptTemplate>();
  for (const prompt of all) latest.set(prompt.id, prompt);
  const ids = [...latest.keys()];

  return {
    ids,
    all,
    get(id: string): PromptTemplate {
      const prompt = latest.get(id);
      if (prompt === undefined) {
        throw new ConfigError(
          `There is no prompt "${id}" in ${absoluteDir}; the prompts there are: ${ids.join(", ") || "(none)"}.`,
          { context: { promptsDir: absoluteDir, id } },
        );
      }
      return prompt;
    },
  };
}

/** Options of {@link parsePrompt}. */
export interface ParsePromptOptions {
  /** Path of the file, for messages; its base name must be `<id>.v<version>.md`. */
  file: string;
  text: string;
}

/**
 * Parses and checks one prompt file (everything {@link loadPrompts} checks except the variables the
 * code requires).
 *
 * @throws {ConfigError} naming the file, what is wrong and how to fix it.
 */
export function parsePrompt({ file, text }: ParsePromptOptions): PromptTemplate {
  const fail = (problem: string, fix: string, context: Record<string, unknown> = {}): never => {
    throw new ConfigError(`Prompt file ${file}: ${problem}. ${fix}`, { context: { file, ...context } });
  };

  const baseName = path.basename(file);
  const nameMatch = fileNamePattern.exec(baseName);
  if (nameMatch === null) {
    fail(
      `the file name "${baseName}" is not <id>.v<version>.md`,
      "Rename it (for example answer.v2.md), or move files that are not prompts out of the prompts directory.",
    );
  }
  const [, fileId, fileVersion] = nameMatch as RegExpExecArray;

  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  if (lines[0]?.trim() !== "---") {
    fail(
      "it does not start with front matter",
      "Begin the file with a line `---`, the id, version, description and variables, and another `---`.",
    );
  }
  const endIndex = lines.findIndex((line, index) => index > 0 && line.trim() === "---");
  if (endIndex === -1) fail("its front matter is not closed", "Add a line `---` after the variables.");

  const front = parseFrontMatter({ lines: lines.slice(1, endIndex), fail });
  const id = front.id;
  if (id === undefined || !idPattern.test(id)) {
    fail(
      `the id ${JSON.stringify(id ?? null)} is missing or invalid`,
      "Set `id:` to letters, digits, - and _.",
    );
  }
  if (id !== fileId) {
    fail(
      `the id "${id}" does not match the file name (id "${fileId}")`,
      `Set \`id: ${fileId}\` or rename the file to ${id}.v${fileVersion}.md.`,
    );
  }
  const version = Number(front.version);
  if (front.version === undefined || !/^[1-9][0-9]{0,5}$/.test(front.version)) {
    fail(
      `the version ${JSON.stringify(front.version ?? null)} is missing or not a positive integer`,
      "Set `version:` to 1, 2, …",
    );
  }
  if (String(version) !== fileVersion) {
    fail(
      `the version ${version} does not match the file name (version ${fileVersion})`,
      `Set \`version: ${fileVersion}\` or rename the file to ${id}.v${version}.md.`,
    );
  }
  const description = front.description ?? "";
  if (description === "")
    fail("the description is missing", "Add `description:` with one line saying what the prompt is for.");
  const variables = front.variables;
  if (variables === undefined) {
    fail(
      "the variables are not declared",
      "Add `variables: [name, …]` listing every {{placeholder}} the prompt uses.",
    );
  }
  const declared = variables as string[];
  for (const variable of declared) {
    if (!variablePattern.test(variable)) {
      fail(
        `the variable name "${variable}" is invalid`,
        "Use letters, digits and _ (not starting with a digit).",
        { variable },
      );
    }
  }
  const duplicate = declared.find((variable, index) => declared.indexOf(variable) !== index);
  if (duplicate !== undefined)
    fail(`the variable "${duplicate}" is declared twice`, "List each variable once.", {
      variable: duplicate,
    });

  const sections = parseSections({ lines: lines.slice(endIndex + 1), fail });

  const used = new Set<string>();
  for (const name of sectionNames) {
    const body = sections[name];
    for (const match of body.matchAll(placeholderPattern)) used.add(match[1] as string);
    const leftover = body.replace(placeholderPattern, "");
    const broken = /\{\{|\}\}/.exec(leftover);
    if (broken !== null) {
      const around = leftover.slice(Math.max(0, broken.index - 20), broken.index + 22).replace(/\s+/g, " ");
      fail(
        `the ${name} section has a malformed placeholder near "${around}"`,
        "Write placeholders as {{name}} with a declared variable name, and do not use {{ or }} otherwise.",
      );
    }
  }
  for (const variable of used) {
    if (!declared.includes(variable)) {
      fail(
        `the placeholder {{${variable}}} is not declared`,
        `Add "${variable}" to \`variables:\` (declared: ${declared.join(", ") || "none"}), or remove the placeholder.`,
        { variable },
      );
    }
  }
  for (const variable of declared) {
    if (!used.has(variable)) {
      fail(
        `the variable "${variable}" is declared but no section uses {{${variable}}}`,
        `Use {{${variable}}} in the system or user section, or remove it from \`variables:\`.`,
        { variable },
      );
    }
  }

  return {
    id: id as string,
    version,
    description,
    variables: declared,
    system: sections.system,
    user: sections.user,
    file,
  };
}

/** Options of {@link renderPrompt}. */
export interface RenderPromptOptions {
  prompt: PromptTemplate;
  /** One value per declared variable, inserted verbatim. */
  values: Readonly<Record<string, string>>;
}

/**
 * Fills a prompt's placeholders. Each value is inserted as it is, in one pass: placeholders that appear
 * inside a value (say, in a stored caption) stay as written and are never expanded.
 *
 * @throws {ConfigError} when a declared variable has no value or a value is given for an undeclared one
 * (the code and the prompt disagree).
 */
export function renderPrompt({ prompt, values }: RenderPromptOptions): { system: string; user: string } {
  const given = Object.keys(values);
  const missing = prompt.variables.filter((variable) => !Object.hasOwn(values, variable));
  const unknown = given.filter((variable) => !prompt.variables.includes(variable));
  if (missing.length > 0 || unknown.length > 0) {
    throw new ConfigError(
      `Prompt ${prompt.id} v${prompt.version} (${prompt.file}) declares variables ${prompt.variables.join(", ")}, but was given ${given.join(", ") || "none"}${missing.length > 0 ? `; missing: ${missing.join(", ")}` : ""}${unknown.length > 0 ? `; unknown: ${unknown.join(", ")}` : ""}. Declare exactly the variables Loupe fills (prompts/README.md).`,
      { context: { file: prompt.file, missing, unknown } },
    );
  }
  const fill = (template: string) =>
    template.replace(placeholderPattern, (_placeholder, name: string) => values[name] as string);
  return { system: fill(prompt.system), user: fill(prompt.user) };
}

function checkRequiredVariables({
  prompt,
  variables,
}: {
  prompt: PromptTemplate;
  variables: readonly string[];
}): void {
  const missing = variables.filter((variable) => !prompt.variables.includes(variable));
  const unknown = prompt.variables.filter((variable) => !variables.includes(variable));
  if (missing.length > 0) {
    throw new ConfigError(
      `Prompt file ${prompt.file}: the variable${missing.length > 1 ? "s" : ""} ${missing.map((name) => `"${name}"`).join(", ")} ${missing.length > 1 ? "are" : "is"} missing; Loupe fills ${variables.join(", ")} for prompt "${prompt.id}". Add ${missing.map((name) => `{{${name}}}`).join(", ")} to a section and to \`variables:\`.`,
      { context: { file: prompt.file, missing, expected: variables } },
    );
  }
  if (unknown.length > 0) {
    throw new ConfigError(
      `Prompt file ${prompt.file}: the variable${unknown.length > 1 ? "s" : ""} ${unknown.map((name) => `"${name}"`).join(", ")} ${unknown.length > 1 ? "are" : "is"} unknown; Loupe fills only ${variables.join(", ")} for prompt "${prompt.id}". Remove ${unknown.map((name) => `{{${name}}}`).join(", ")} from the prompt and from \`variables:\`.`,
      { context: { file: prompt.file, unknown, expected: variables } },
    );
  }
}

type Fail = (problem: string, fix: string, context?: Record<string, unknown>) => never;

interface FrontMatter {
  id?: string;
  version?: string;
  description?: string;
  variables?: string[];
}

/**
 * The small YAML subset prompt files use: `key: value` scalars (optionally quoted) and `variables` as
 * an inline list `[a, b]` or a block list of `- a` lines. Anything else is refused with the line.
 */
function parseFrontMatter({ lines, fail }: { lines: string[]; fail: Fail }): FrontMatter {
  const front: FrontMatter = {};
  const seen = new Set<string>();
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index] as string;
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)$/.exec(line);
    if (match === null) {
      fail(
        `the front matter line ${JSON.stringify(line)} is not \`key: value\``,
        `Use only ${frontMatterKeys.join(", ")}.`,
      );
    }
    const [, key, rawValue] = match as RegExpExecArray;
    if (!(frontMatterKeys as readonly string[]).includes(key as string)) {
      fail(`the front matter key "${key}" is unknown`, `Allowed keys: ${frontMatterKeys.join(", ")}.`, {
        key,
      });
    }
    if (seen.has(key as string)) fail(`the front matter key "${key}" appears twice`, "Keep one.", { key });
    seen.add(key as string);
    const value = (rawValue as string).trim();
    if (key === "variables") {
      if (value.startsWith("[")) {
        if (!value.endsWith("]"))
          fail("the variables list is not closed", "Write `variables: [a, b, c]` on one line.");
        const inner = value.slice(1, -1).trim();
        front.variables = inner === "" ? [] : inner.split(",").map((item) => unquote(item.trim()));
      } else if (value === "") {
        const items: string[] = [];
        while (index + 1 < lines.length && /^\s*-\s/.test(lines[index + 1] as string)) {
          index++;
          items.push(unquote((lines[index] as string).replace(/^\s*-\s/, "").trim()));
        }
        front.variables = items;
      } else {
        fail(`the variables value ${JSON.stringify(value)} is not a list`, "Write `variables: [a, b, c]`.");
      }
    } else {
      front[key as "id" | "version" | "description"] = unquote(value);
    }
  }
  return front;
}

function unquote(value: string): string {
  const quoted = /^"(.*)"$/.exec(value) ?? /^'(.*)'$/.exec(value);
  return quoted === null ? value : (quoted[1] as string);
}

/** Splits the body at its level-2 headings; exactly `## system` then `## user`, with nothing before. */
function parseSections({ lines, fail }: { lines: string[]; fail: Fail }): Record<"system" | "user", string> {
  const found: Array<{ name: string; lines: string[] }> = [];
  const preamble: string[] = [];
  for (const line of lines) {
    const heading = /^##\s+(.+?)\s*$/.exec(line);
    if (heading !== null) {
      found.push({ name: (heading[1] as string).toLowerCase(), lines: [] });
    } else if (found.length === 0) {
      preamble.push(line);
    } else {
      found.at(-1)?.lines.push(line);
    }
  }
  if (preamble.some((line) => line.trim() !== "")) {
    fail(
      "there is text between the front matter and `## system`",
      "Move it into a section or into `description:`.",
    );
  }
  const names = found.map((section) => section.name);
  for (const name of names) {
    if (!(sectionNames as readonly string[]).includes(name)) {
      fail(
        `the section "## ${name}" is unknown`,
        "A prompt has exactly `## system` and `## user`; use ### or lower for headings inside them.",
        { section: name },
      );
    }
  }
  if (names.join(",") !== sectionNames.join(",")) {
    fail(
      `the sections are ${names.map((name) => `"## ${name}"`).join(", ") || "missing"}`,
      "A prompt has exactly `## system` then `## user`, once each.",
    );
  }
  const result = { system: "", user: "" };
  for (const section of found) {
    const body = section.lines.join("\n").trim();
    if (body === "") fail(`the ${section.name} section is empty`, "Write the prompt text under the heading.");
    result[section.name as "system" | "user"] = body;
  }
  return result;
}
