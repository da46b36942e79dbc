import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { loadPrompts, parsePrompt, renderPrompt } from "../../src/llm/prompts.ts";

const root = path.join(import.meta.dirname, "..", "..");
const answerVariables = ["question", "evidence", "history"] as const;

function promptText({
  id = "answer",
  version = 1,
  variables = "[question, evidence, history]",
  system = "Answer from the evidence only.",
  user = "History: {{history}}\nEvidence: {{evidence}}\nQuestion: {{question}}",
  extraFront = "",
}: {
  id?: string;
  version?: number;
  variables?: string;
  system?: string;
  user?: string;
  extraFront?: string;
} = {}): string {
  return `---\nid: ${id}\nversion: ${version}\ndescription: A test prompt.\nvariables: ${variables}\n${extraFront}---\n\n## system\n\n${system}\n\n## user\n\n${user}\n`;
}

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

async function loadError(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("the bundled prompts", () => {
  it("load and declare exactly the variables the LLM composer fills", async () => {
    const prompts = await loadPrompts({
      dir: path.join(root, "prompts"),
      required: { answer: answerVariables },
    });
    const answer = prompts.get("answer");
    expect(answer.version).toBeGreaterThanOrEqual(1);
    expect([...answer.variables].sort()).toEqual([...answerVariables].sort());
    expect(answer.system).toContain("<untrusted-data>");
    expect(answer.system).toMatch(/\[img_/);
  });
});

describe("parsePrompt", () => {
  const file = "/prompts/answer.v1.md";

  it("parses front matter and both sections", () => {
    const prompt = parsePrompt({ file, text: promptText() });
    expect(prompt).toMatchObject({
      id: "answer",
      version: 1,
      description: "A test prompt.",
      variables: ["question", "evidence", "history"],
      system: "Answer from the evidence only.",
    });
    expect(prompt.user).toContain("{{question}}");
  });

  it("accepts a block list of variables and blank lines in the front matter", () => {
    const text = promptText({ variables: "" }).replace(
      "variables: \n",
      "variables:\n  - question\n  - evidence\n\n  - history\n",
    );
    // A blank line inside a block list ends it: the last item is then a stray line.
    expect(() => parsePrompt({ file, text })).toThrow(ConfigError);
    const ok = promptText({ variables: "" }).replace(
      "variables: \n",
      "\nvariables:\n  - question\n  - evidence\n  - history\n",
    );
    expect(parsePrompt({ file, text: ok }).variables).toEqual(["question", "evidence", "history"]);
  });

  it("refuses a placeholder that is not declared, naming the file, the variable and the fix", () => {
    const error = configError(() =>
      parsePrompt({ file, text: promptText({ user: "{{question}} {{evidence}} {{history}} {{tenant}}" }) }),
    );
    expect(error.message).toContain(file);
    expect(error.message).toContain("{{tenant}}");
    expect(error.message).toContain("variables:");
    expect(error.context).toMatchObject({ file, variable: "tenant" });
  });

  it("refuses a declared variable that no section uses", () => {
    const error = configError(() =>
      parsePrompt({ file, text: promptText({ user: "{{question}} {{evidence}}" }) }),
    );
    expect(error.message).toContain('"history" is declared but no section uses {{history}}');
  });

  it("refuses malformed placeholders", () => {
    const error = configError(() =>
      parsePrompt({ file, text: promptText({ user: "{{question}} {{evidence}} {{history} and {{ 2x }}" }) }),
    );
    expect(error.message).toContain("malformed placeholder");
  });

  it("refuses a file whose name does not match its id or version", () => {
    expect(configError(() => parsePrompt({ file: "/p/answer.v2.md", text: promptText() })).message).toContain(
      "does not match the file name",
    );
    expect(configError(() => parsePrompt({ file: "/p/other.v1.md", text: promptText() })).message).toContain(
      'id "answer" does not match',
    );
    expect(configError(() => parsePrompt({ file: "/p/answer.md", text: promptText() })).message).toContain(
      "is not <id>.v<version>.md",
    );
  });

  it("refuses unknown front matter keys, missing sections and extra sections", () => {
    expect(
      configError(() => parsePrompt({ file, text: promptText({ extraFront: "model: gpt-4o\n" }) })).message,
    ).toContain('key "model" is unknown');
    expect(
      configError(() => parsePrompt({ file, text: promptText().replace("## user", "## assistant") })).message,
    ).toContain('"## assistant" is unknown');
    expect(
      configError(() => parsePrompt({ file, text: promptText().replace(/## user[\s\S]*$/, "") })).message,
    ).toContain("exactly `## system` then `## user`");
    expect(
      configError(() => parsePrompt({ file, text: "## system\nhi\n## user\n{{question}}" })).message,
    ).toContain("does not start with front matter");
  });
});

describe("loadPrompts", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-prompts-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("uses the highest version of each id and checks the older ones too", async () => {
    await writeFile(path.join(dir, "answer.v1.md"), promptText({ system: "Version one." }));
    await writeFile(path.join(dir, "answer.v2.md"), promptText({ version: 2, system: "Version two." }));
    await writeFile(path.join(dir, "README.md"), "# not a prompt\n");
    const prompts = await loadPrompts({ dir, required: { answer: answerVariables } });
    expect(prompts.ids).toEqual(["answer"]);
    expect(prompts.get("answer").system).toBe("Version two.");
    expect(prompts.all.map((prompt) => prompt.version)).toEqual([1, 2]);

    await writeFile(path.join(dir, "answer.v1.md"), promptText({ user: "{{question}} {{evidence}}" }));
    const error = await loadError(loadPrompts({ dir, required: { answer: answerVariables } }));
    expect(error.message).toContain(path.join(dir, "answer.v1.md"));
  });

  it("fails when a variable the code fills is missing, naming it and the fix", async () => {
    await writeFile(
      path.join(dir, "answer.v1.md"),
      promptText({ variables: "[question, evidence]", user: "{{evidence}} {{question}}" }),
    );
    const error = await loadError(loadPrompts({ dir, required: { answer: answerVariables } }));
    expect(error.message).toContain(path.join(dir, "answer.v1.md"));
    expect(error.message).toContain('"history" is missing');
    expect(error.message).toContain("Add {{history}}");
  });

  it("fails when the prompt declares a variable the code does not fill", async () => {
    await writeFile(
      path.join(dir, "answer.v1.md"),
      promptText({
        variables: "[question, evidence, history, persona]",
        user: "{{persona}} {{history}} {{evidence}} {{question}}",
      }),
    );
    const error = await loadError(loadPrompts({ dir, required: { answer: answerVariables } }));
    expect(error.message).toContain('"persona" is unknown');
    expect(error.message).toContain("Remove {{persona}}");
  });

  it("fails when a required prompt or the directory is missing", async () => {
    expect((await loadError(loadPrompts({ dir, required: { answer: answerVariables } }))).message).toContain(
      'no prompt "answer"',
    );
    const missing = path.join(dir, "nope");
    const error = await loadError(loadPrompts({ dir: missing }));
    expect(error.message).toContain(missing);
    expect(error.message).toContain("LOUPE_PROMPTS_DIR");
  });
});

describe("renderPrompt", () => {
  const prompt = parsePrompt({
    file: "/p/answer.v1.md",
    text: promptText({ system: "Rules for {{question}}." }),
  });

  it("fills every placeholder verbatim, in one pass", () => {
    const rendered = renderPrompt({
      prompt,
      values: {
        question: "what is $& and $1?",
        evidence: "caption says {{question}} and {{history}}",
        history: "(none)",
      },
    });
    expect(rendered.system).toBe("Rules for what is $& and $1?.");
    // Placeholders inside values stay as written: stored text cannot pull in other values.
    expect(rendered.user).toBe(
      "History: (none)\nEvidence: caption says {{question}} and {{history}}\nQuestion: what is $& and $1?",
    );
  });

  it("refuses missing or unknown values", () => {
    const error = configError(() =>
      renderPrompt({ prompt, values: { question: "q", evidence: "e", extra: "x" } }),
    );
    expect(error.message).toContain("missing: history");
    expect(error.message).toContain("unknown: extra");
  });
});
