/**
 * The PostgreSQL adapter of the {@link ClassifierStore} port, for several Loupe processes sharing
 * classifiers (`LOUPE_DATABASE_URL`): one row per classifier in `loupe_classifiers` (migration 4), keyed
 * by tenant and name, the whole classifier as jsonb. A save is one upsert, so a reader sees the old
 * classifier or the new one, never a mix; two replicas saving one name at once: the last write wins,
 * whole. Names sort bytewise (`collate "C"`), as the file store lists its files.
 */
import type pg from "pg";
import { runQuery } from "../db/query-failure.ts";
import { ValidationError } from "../errors.ts";
import { CLASSIFIER_NAME_PATTERN, type StoredClassifier } from "./classifier.ts";
import type { ClassifierStore } from "./classifier-store.ts";

/** Options of {@link createPgClassifierStore}. */
export interface PgClassifierStoreOptions {
  /** The pool of `LOUPE_DATABASE_URL`, migrated; the store does not close it. */
  pool: pg.Pool;
}

/** The classifier store over the `loupe_classifiers` table of a migrated database. */
export function createPgClassifierStore({ pool }: PgClassifierStoreOptions): ClassifierStore {
  return {
    async list({ tenant }) {
      const found = await runQuery<{ classifier: StoredClassifier }>(pool, {
        what: `Listing the classifiers of tenant ${tenant}`,
        text: "select classifier from loupe_classifiers where tenant = $1 order by name",
        values: [tenant],
      });
      return found.rows.map((row) => row.classifier);
    },

    async get({ tenant, name }) {
      if (!CLASSIFIER_NAME_PATTERN.test(name)) return undefined;
      const found = await runQuery<{ classifier: StoredClassifier }>(pool, {
        what: `Reading classifier ${name}`,
        text: "select classifier from loupe_classifiers where tenant = $1 and name = $2",
        values: [tenant, name],
      });
      return found.rows[0]?.classifier;
    },

    async put(classifier) {
      if (!CLASSIFIER_NAME_PATTERN.test(classifier.name)) {
        throw new ValidationError(
          `Invalid classifier name ${JSON.stringify(classifier.name.slice(0, 80))}: a letter, then up to 57 letters, digits or _.`,
        );
      }
      await runQuery(pool, {
        what: `Saving classifier ${classifier.name}`,
        text: `insert into loupe_classifiers (tenant, name, model_id, created_at, updated_at, classifier)
               values ($1, $2, $3, $4, $5, $6)
               on conflict (tenant, name) do update
                 set model_id = excluded.model_id, created_at = excluded.created_at,
                     updated_at = excluded.updated_at, classifier = excluded.classifier`,
        values: [
          classifier.tenant,
          classifier.name,
          classifier.modelId,
          classifier.createdAt,
          classifier.updatedAt,
          JSON.stringify(classifier),
        ],
      });
    },

    async delete({ tenant, name }) {
      if (!CLASSIFIER_NAME_PATTERN.test(name)) return false;
      const deleted = await runQuery(pool, {
        what: `Deleting classifier ${name}`,
        text: "delete from loupe_classifiers where tenant = $1 and name = $2",
        values: [tenant, name],
      });
      return (deleted.rowCount ?? 0) > 0;
    },
  };
}
