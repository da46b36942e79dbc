#!/usr/bin/env node
// Entry point of the `loupe` command: runs the compiled CLI in dist/ (`npm run build`; `npm run setup` builds it).
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(
    "loupe: the compiled code (dist/) is missing. Run `npm run build` (`npm run setup` builds it).\n",
  );
  process.exit(1);
}
await import(entry.href);
