// Rewrites the configuration table of README.md from the settings schema in src/config.ts.
// Run it (npm run docs:config) after adding or changing a setting; test/config.test.ts fails until you do.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { spliceConfigTable } from "../src/config.ts";

const readmePath = path.join(import.meta.dirname, "..", "README.md");
const readme = await readFile(readmePath, "utf8");
const updated = spliceConfigTable(readme);
if (updated === readme) {
  console.log("README.md configuration table is up to date.");
} else {
  await writeFile(readmePath, updated);
  console.log("README.md configuration table rewritten from src/config.ts.");
}
