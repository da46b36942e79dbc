#!/usr/bin/env node
// Entry point of the `loupe` command: runs the TypeScript sources through tsx.
import { tsImport } from "tsx/esm/api";

await tsImport("../src/cli/main.ts", import.meta.url);
