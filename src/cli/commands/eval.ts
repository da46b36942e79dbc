/**
 * `loupe eval --suite <name|path> …`: the eval runner of `src/eval/suite/` (the same as `npm run eval`). It
 * runs a suite in-process or against a running Loupe and writes results.json, report.md and report.html;
 * see `src/eval/suite/cli.ts` for the options and README > "Evaluate on your own data".
 */
import type { Command } from "commander";

/** Adds `eval` to the `loupe` program. */
export function registerEvalCommand(program: Command): void {
  program
    .command("eval")
    .description("run an eval suite and write its reports (loupe eval --help for the options)")
    // The runner parses its own options; it is loaded on use, like the server.
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[options...]")
    .action(async (args: string[]) => {
      const { Command: EvalCommand } = await import("commander");
      const { configureEvalCommand } = await import("../../eval/suite/cli.ts");
      const command = configureEvalCommand(new EvalCommand("loupe eval")).showHelpAfterError();
      await command.parseAsync(args, { from: "user" });
    });
}
