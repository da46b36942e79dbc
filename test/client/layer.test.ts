/**
 * The client's layer rule: `src/client/` imports Node's built-ins, `src/errors.ts` and, as types only,
 * the chain's and the search layer's types; nothing else of Loupe, so a program can use the client
 * without loading the server. Biome's `noRestrictedImports` cannot tell a type import from a value
 * import, so this test reads the imports itself.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";

const CLIENT_DIR = path.join(import.meta.dirname, "..", "..", "src", "client");

/** Every `import … from "…"` and `export … from "…"` of a file: the specifier and whether it is type-only. */
function importsOf(source: string): Array<{ specifier: string; typeOnly: boolean }> {
  const found: Array<{ specifier: string; typeOnly: boolean }> = [];
  for (const match of source.matchAll(/^(import|export)(\s+type)?[\s\S]*?from\s+"([^"]+)";/gm)) {
    found.push({ specifier: match[3] as string, typeOnly: match[2] !== undefined });
  }
  for (const match of source.matchAll(/^import\s+"([^"]+)";/gm)) {
    found.push({ specifier: match[1] as string, typeOnly: false });
  }
  return found;
}

describe("src/client/", () => {
  it("imports only Node's built-ins, errors.ts, its own files, and types of rag/ and search/", async () => {
    const files = (await readdir(CLIENT_DIR)).filter((file) => file.endsWith(".ts"));
    expect(files.length).toBeGreaterThan(0);
    const refused: string[] = [];
    for (const file of files) {
      for (const { specifier, typeOnly } of importsOf(await readFile(path.join(CLIENT_DIR, file), "utf8"))) {
        const allowed =
          specifier.startsWith("node:") ||
          specifier.startsWith("./") ||
          specifier === "../errors.ts" ||
          (typeOnly && (specifier === "../rag/types.ts" || specifier.startsWith("../search/")));
        if (!allowed) refused.push(`${file}: ${typeOnly ? "import type" : "import"} from "${specifier}"`);
      }
    }
    expect(refused).toEqual([]);
  });
});
