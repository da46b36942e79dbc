/**
 * The PostgreSQL adapter of the {@link BlobReferenceIndex} port: one row per reference in
 * `loupe_blob_refs` (migration 9), keyed by store, sha256 and label, and one row per store in
 * `loupe_blob_ref_imports` once its earlier reference objects were copied in.
 *
 * A blob's lock is a transaction-scoped advisory lock, `pg_advisory_xact_lock(class, key)` with a class
 * of its own and a key hashed from the store and the sha256: it is held from the start of
 * {@link BlobReferenceIndex.withBlob}'s transaction to its commit or rollback, so it is released when the
 * work ends, however it ends (a process that dies loses its connection, and the server releases the
 * lock). Two blobs whose keys collide only wait for each other. Times are the writer's clock, as the S3
 * adapter's reference objects held them, so the orphan sweep reads one kind of time whatever the index.
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { withTransaction } from "../db/database.ts";
import { runQuery } from "../db/query-failure.ts";
import type {
  BlobReference,
  BlobReferenceIndex,
  ImportedBlobReference,
  LockedBlobReferences,
} from "./blob-references.ts";
import { assertBlobKey, assertOwner } from "./blob-store.ts";

/** Advisory lock class of blob references ("lopb"); other Loupe locks use the one-key form. */
const BLOB_LOCK_CLASS = 0x6c6f7062;

/** Rows per insert of an import. */
const IMPORT_BATCH = 500;

/** Options of {@link createPgBlobReferences}. */
export interface PgBlobReferencesOptions {
  /** A pool on a database with migration 9 applied; the index does not end it. */
  pool: pg.Pool;
  /** The blob store indexed, e.g. `s3://<bucket>/<prefix>`: stores on one database keep apart. */
  store: string;
}

interface ReferenceRow {
  label: string;
  touched_ms: string;
}

/** The second key of a lock: 32 bits of the sha256 of `parts`, as PostgreSQL's signed int4. */
function lockKey(...parts: string[]): number {
  return createHash("sha256").update(parts.join("\n")).digest().readInt32BE(0);
}

/** `touched_at` as whole milliseconds since the epoch. */
const TOUCHED_MS = "round(extract(epoch from touched_at) * 1000)::bigint::text as touched_ms";

function toReference(row: ReferenceRow): BlobReference {
  return { label: row.label, touchedAt: Number(row.touched_ms) };
}

/** The reference index of one store over the tables of a migrated database. */
export function createPgBlobReferences({ pool, store }: PgBlobReferencesOptions): BlobReferenceIndex {
  const locked = (client: pg.PoolClient, sha256: string): LockedBlobReferences => ({
    async list() {
      const found = await runQuery<ReferenceRow>(pool, {
        client,
        what: `Reading the references of blob ${sha256}`,
        text: `select label, ${TOUCHED_MS} from loupe_blob_refs where store = $1 and sha256 = $2 order by label`,
        values: [store, sha256],
      });
      return found.rows.map(toReference);
    },
    async touch(label, at = Date.now()) {
      assertOwner(label);
      const written = await runQuery<{ added: boolean }>(pool, {
        client,
        what: `Adding ${label}'s reference to blob ${sha256}`,
        // xmax is 0 on a row this statement inserted, and set on one it updated.
        text: `insert into loupe_blob_refs (store, sha256, label, touched_at)
               values ($1, $2, $3, to_timestamp($4::double precision / 1000))
               on conflict (store, sha256, label) do update set touched_at = excluded.touched_at
               returning (xmax = 0) as added`,
        values: [store, sha256, label, at],
      });
      return written.rows[0]?.added === true;
    },
    async drop(labels) {
      if (labels.length === 0) return [];
      const dropped = await runQuery<{ label: string }>(pool, {
        client,
        what: `Dropping references to blob ${sha256}`,
        text: "delete from loupe_blob_refs where store = $1 and sha256 = $2 and label = any($3) returning label",
        values: [store, sha256, [...labels]],
      });
      return dropped.rows.map((row) => row.label).sort();
    },
    async dropAll() {
      await runQuery(pool, {
        client,
        what: `Dropping every reference to blob ${sha256}`,
        text: "delete from loupe_blob_refs where store = $1 and sha256 = $2",
        values: [store, sha256],
      });
    },
  });

  return {
    store,

    async withBlob(sha256, work) {
      assertBlobKey(sha256);
      return withTransaction(pool, async (client) => {
        await runQuery(pool, {
          client,
          what: `Locking blob ${sha256}`,
          text: "select pg_advisory_xact_lock($1, $2)",
          values: [BLOB_LOCK_CLASS, lockKey(store, sha256)],
        });
        return work(locked(client, sha256));
      });
    },

    async list(sha256) {
      assertBlobKey(sha256);
      const found = await runQuery<ReferenceRow>(pool, {
        what: `Reading the references of blob ${sha256}`,
        text: `select label, ${TOUCHED_MS} from loupe_blob_refs where store = $1 and sha256 = $2 order by label`,
        values: [store, sha256],
      });
      return found.rows.map(toReference);
    },

    async listAll() {
      const found = await runQuery<ReferenceRow & { sha256: string }>(pool, {
        what: `Listing the blob references of ${store}`,
        text: `select sha256, label, ${TOUCHED_MS} from loupe_blob_refs where store = $1 order by sha256, label`,
        values: [store],
      });
      const all = new Map<string, BlobReference[]>();
      for (const row of found.rows) {
        const refs = all.get(row.sha256) ?? [];
        refs.push(toReference(row));
        all.set(row.sha256, refs);
      }
      return all;
    },

    async importOnce(load) {
      return withTransaction(pool, async (client) => {
        await runQuery(pool, {
          client,
          what: `Locking the reference import of ${store}`,
          text: "select pg_advisory_xact_lock($1, $2)",
          values: [BLOB_LOCK_CLASS, lockKey("import", store)],
        });
        const done = await runQuery(pool, {
          client,
          what: `Reading the reference import of ${store}`,
          text: "select 1 from loupe_blob_ref_imports where store = $1",
          values: [store],
        });
        if ((done.rowCount ?? 0) > 0) return undefined;
        // One row per label of a blob (the newest time), so one insert never meets its own row twice.
        const unique = new Map<string, ImportedBlobReference>();
        for (const reference of await load()) {
          const key = `${reference.sha256}/${reference.label}`;
          const known = unique.get(key);
          if (known === undefined || known.touchedAt < reference.touchedAt) unique.set(key, reference);
        }
        const references = [...unique.values()];
        for (let start = 0; start < references.length; start += IMPORT_BATCH) {
          const batch = references.slice(start, start + IMPORT_BATCH);
          for (const reference of batch) {
            assertBlobKey(reference.sha256);
            assertOwner(reference.label);
          }
          await runQuery(pool, {
            client,
            what: `Importing blob references of ${store}`,
            text: `insert into loupe_blob_refs (store, sha256, label, touched_at)
                   select $1, sha256, label, to_timestamp(ms / 1000)
                   from unnest($2::text[], $3::text[], $4::double precision[]) as imported (sha256, label, ms)
                   on conflict (store, sha256, label) do update
                     set touched_at = greatest(loupe_blob_refs.touched_at, excluded.touched_at)`,
            values: [
              store,
              batch.map((reference) => reference.sha256),
              batch.map((reference) => reference.label),
              batch.map((reference) => reference.touchedAt),
            ],
          });
        }
        await runQuery(pool, {
          client,
          what: `Recording the reference import of ${store}`,
          text: "insert into loupe_blob_ref_imports (store, imported_at, refs) values ($1, now(), $2)",
          values: [store, references.length],
        });
        return { imported: references.length };
      });
    },
  };
}
