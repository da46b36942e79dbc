/**
 * Opens the feedback store the settings name, for what opens it alone (`loupe feedback`): on the
 * database of `LOUPE_DATABASE_URL` when it is set, else the files under `<LOUPE_DATA_DIR>/feedback`. The
 * server builds its own over the services' pool (`services.ts`).
 */
import path from "node:path";
import { createFileFeedbackStore, type FeedbackStore } from "./feedback-store.ts";

/** Options of {@link openFeedbackStore}. */
export interface OpenFeedbackStoreOptions {
  /** `LOUPE_DATABASE_URL`; absent: the files under `dataDir`. */
  databaseUrl?: string;
  /** `LOUPE_DATA_DIR`. */
  dataDir: string;
}

/**
 * The feedback store of the settings; its `close()` releases what it opened (the database's pool).
 * Closing it twice closes it once.
 *
 * @throws {DatabaseError} with a database URL: `migrations_pending` (naming `loupe migrate`),
 *   `database_invalid` or `database_unavailable`.
 */
export async function openFeedbackStore({
  databaseUrl,
  dataDir,
}: OpenFeedbackStoreOptions): Promise<FeedbackStore> {
  if (databaseUrl === undefined) return createFileFeedbackStore({ dir: path.join(dataDir, "feedback") });
  // Imported on use: without a database URL `pg` is never loaded.
  const [{ openDatabase }, { createPgFeedbackStore }] = await Promise.all([
    import("../db/open-database.ts"),
    import("./pg-feedback-store.ts"),
  ]);
  const pool = await openDatabase({ url: databaseUrl });
  const store = createPgFeedbackStore({ pool });
  let closing: Promise<void> | undefined;
  return {
    ...store,
    close() {
      closing ??= store.close().finally(() => pool.end());
      return closing;
    },
  };
}
