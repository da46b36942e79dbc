/**
 * Where eval data lives: the top-level `evals/` folder of Loupe's install directory holds suites, the
 * committed baselines and run outputs (not committed); the code that reads and writes them is under
 * `src/eval/`. These paths do not depend on the working directory.
 */
import { join } from "node:path";
import { INSTALL_DIR } from "../../config.ts";

/** The top-level `evals/` folder. */
export const EVALS_DIR = join(INSTALL_DIR, "evals");

/** Where runs write their reports unless `--out` says otherwise. */
export const RUNS_DIR = join(EVALS_DIR, "runs");
