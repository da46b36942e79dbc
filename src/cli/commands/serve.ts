/**
 * `loupe serve`: runs the HTTP server until SIGINT or SIGTERM. All settings come from the environment
 * (see the README's configuration table), so the command takes no options of its own.
 */
import type { Command } from "commander";

/** Adds `serve` to the `loupe` program. */
export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve the HTTP API (settings from environment variables; see README > Configuration)")
    .action(async () => {
      // Imported on use: the server pulls in the Milvus SDK, which other subcommands need not load.
      const { runLoupe } = await import("../../main.ts");
      await runLoupe();
    });
}
