// Rewrites the configuration table of docs/configuration.md from the settings schema in src/config.ts,
// then lets Biome format it (Biome pads markdown tables). Run it (npm run docs:config) after adding or
// changing a setting; test/config.test.ts fails until you do.
import { execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  CONFIG_TABLE_DOC,
  documentConfigTable,
  markdownTableCells,
  renderConfigTable,
  spliceConfigTable,
} from "../src/config.ts";

const root = path.join(import.meta.dirname, "..");
const docPath = path.join(root, CONFIG_TABLE_DOC);
const doc = await readFile(docPath, "utf8");
const current = JSON.stringify(markdownTableCells(documentConfigTable(doc)));
if (current === JSON.stringify(markdownTableCells(renderConfigTable()))) {
  console.log(`${CONFIG_TABLE_DOC}: the configuration table is up to date.`);
} else {
  await writeFile(docPath, spliceConfigTable(doc));
  execFileSync(path.join(root, "node_modules", ".bin", "biome"), ["format", "--write", docPath], {
    stdio: "inherit",
  });
  console.log(`${CONFIG_TABLE_DOC}: the configuration table is rewritten from src/config.ts.`);
}
