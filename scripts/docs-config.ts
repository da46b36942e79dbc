// Rewrites the configuration table of README.md from the settings schema in src/config.ts, then lets
// Biome format it (Biome pads markdown tables). Run it (npm run docs:config) after adding or changing
// a setting; test/config.test.ts fails until you do.
import { execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  markdownTableCells,
  readmeConfigTable,
  renderConfigTable,
  spliceConfigTable,
} from "../src/config.ts";

const root = path.join(import.meta.dirname, "..");
const readmePath = path.join(root, "README.md");
const readme = await readFile(readmePath, "utf8");
const current = JSON.stringify(markdownTableCells(readmeConfigTable(readme)));
if (current === JSON.stringify(markdownTableCells(renderConfigTable()))) {
  console.log("README.md configuration table is up to date.");
} else {
  await writeFile(readmePath, spliceConfigTable(readme));
  execFileSync(path.join(root, "node_modules", ".bin", "biome"), ["format", "--write", readmePath], {
    stdio: "inherit",
  });
  console.log("README.md configuration table rewritten from src/config.ts.");
}
