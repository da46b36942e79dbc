/**
 * The `loupe` command (bin/loupe.js runs this file). Each subcommand lives in `commands/<name>.ts` and
 * exports `register<Name>Command(program)`; adding one is an import and a register line below.
 */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { AppError } from "../errors.ts";
import { registerAskCommand } from "./commands/ask.ts";
import { registerClassifiersCommand } from "./commands/classifiers.ts";
import { registerEvalCommand } from "./commands/eval.ts";
import { registerFeedbackCommand } from "./commands/feedback.ts";
import { registerGcCommand } from "./commands/gc.ts";
import { registerIngestCommand } from "./commands/ingest.ts";
import { registerKeysCommand } from "./commands/keys.ts";
import { registerMcpCommand } from "./commands/mcp.ts";
import { registerMigrateCommand } from "./commands/migrate.ts";
import { registerModelsCommand } from "./commands/models.ts";
import { registerOcrCommand } from "./commands/ocr.ts";
import { registerRegionsCommand } from "./commands/regions.ts";
import { registerSearchCommand } from "./commands/search.ts";
import { registerServeCommand } from "./commands/serve.ts";
import { registerSynthCommand } from "./commands/synth.ts";

const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

const program = new Command("loupe")
  .description("Loupe: answers questions about images and videos from an indexed corpus")
  .version(version)
  .showHelpAfterError()
  .enablePositionalOptions();

registerServeCommand(program);
registerModelsCommand(program);
registerSynthCommand(program);
registerSearchCommand(program);
registerAskCommand(program);
registerIngestCommand(program);
registerEvalCommand(program);
registerKeysCommand(program);
registerGcCommand(program);
registerOcrCommand(program);
registerRegionsCommand(program);
registerMcpCommand(program);
registerMigrateCommand(program);
registerFeedbackCommand(program);
registerClassifiersCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  // Errors Loupe raises on purpose carry a message written for the operator; a stack would bury it.
  if (error instanceof AppError) {
    process.stderr.write(`loupe: ${error.message}\n`);
  } else {
    process.stderr.write(
      `loupe: unexpected error\n${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  }
  process.exitCode = 1;
}
