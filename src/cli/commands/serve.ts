/**
 * `loupe serve`: runs the HTTP server until SIGINT or SIGTERM. All settings come from the environment
 * (see the README's configuration table); the one option, `--role`, says which part of Loupe this process
 * runs: `api` (HTTP only), `worker` (the shared job queue's items, no HTTP) or `all` (both; the default).
 */
import { type Command, Option } from "commander";

/** Adds `serve` to the `loupe` program. */
export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve the HTTP API (settings from environment variables; see README > Configuration)")
    .addOption(
      new Option(
        "--role <role>",
        "api: HTTP only (jobs go to workers); worker: run queued job items, no HTTP (needs LOUPE_DATABASE_URL and LOUPE_REDIS_URL); all: both",
      )
        .choices(["api", "worker", "all"])
        .default("all"),
    )
    .action(async (options: { role: "api" | "worker" | "all" }) => {
      // Imported on use: the server pulls in the Milvus SDK, which other subcommands need not load.
      const { runLoupe } = await import("../../main.ts");
      await runLoupe({ role: options.role });
    });
}
