/**
 * The PostgreSQL adapter of the {@link ClassifierStore} port, for several Loupe processes sharing
 * classifiers (`LOUPE_DATABASE_URL`): one row per classifier in `loupe_classifiers` (migration 4), keyed
 * by tenant and name, the whole classifier as jsonb. A save is one upsert, so a reader sees the old
 * classifier or the new one, never a mix; two replicas saving one name at once: the last write wins,
 * whole. Names sort bytewise (`collate "C"`), as the file store lists its files. A save under a cap
 * (`maxPerTenant`) counts and upserts in one transaction under a transaction-scoped advisory lock of the
 * tenant, so replicas creating classifiers at once never pass the cap together.
 */
import type pg from "pg";
import { withTransaction } from "../db/database.ts";
import { runQuery } from "../db/query-failure.ts";
import { ValidationError } from "../errors.ts";
import { CLASSIFIER_NAME_PATTERN, type StoredClassifier } from "./classifier.ts";
import { type ClassifierStore, classifierExists, tooManyClassifiers } from "./classifier-store.ts";

/** Inserts the classifier, or replaces the one of its tenant and name whole. */
const UPSERT = `insert into loupe_classifiers (tenant, name, model_id, created_at, updated_at, classifier)
               values ($1, $2, $3, $4, $5, $6)
               on conflict (tenant, name) do update
                 set model_id = excluded.model_id, created_at = excluded.created_at,
                     updated_at = excluded.updated_at, classifier = excluded.classifier`;

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

    async put(classifier, { maxPerTenant, ifAbsent = false } = {}) {
      if (!CLASSIFIER_NAME_PATTERN.test(classifier.name)) {
        throw new ValidationError(
          `Invalid classifier name ${JSON.stringify(classifier.name.slice(0, 80))}: a letter, then up to 57 letters, digits or _.`,
        );
      }
      const what = `Saving classifier ${classifier.name}`;
      const values = [
        classifier.tenant,
        classifier.name,
        classifier.modelId,
        classifier.createdAt,
        classifier.updatedAt,
        JSON.stringify(classifier),
      ];
      if (maxPerTenant === undefined && !ifAbsent) {
        await runQuery(pool, { what, text: UPSERT, values });
        return;
      }
      await withTransaction(pool, async (client) => {
        // Held until commit: the next replica's count, taken after, sees this insert.
        await runQuery(pool, {
          client,
          what,
          text: "select pg_advisory_xact_lock(hashtext('loupe_classifiers'), hashtext($1))",
          values: [classifier.tenant],
        });
        const counted = await runQuery<{ count: number; present: boolean }>(pool, {
          client,
          what,
          text: `select count(*)::int as count, coalesce(bool_or(name = $2), false) as present
                 from loupe_classifiers where tenant = $1`,
          values: [classifier.tenant, classifier.name],
        });
        const { count, present } = counted.rows[0] ?? { count: 0, present: false };
        if (present && ifAbsent) throw classifierExists(classifier.name);
        if (!present && maxPerTenant !== undefined && count >= maxPerTenant) {
          throw tooManyClassifiers({ count, max: maxPerTenant });
        }
        await runQuery(pool, { client, what, text: UPSERT, values });
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
