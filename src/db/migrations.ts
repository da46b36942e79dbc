/**
 * The database's schema, as versioned migrations. Forward-only: a migration, once released, is never
 * edited (its checksum is recorded when applied, and a changed one stops start-up); a change is a new
 * migration with the next version. `loupe migrate` applies them (see `migrate.ts`).
 */

/** One step of the schema. */
export interface Migration {
  /** 1, 2, 3… in order, without gaps. */
  version: number;
  /** What it does, in a few kebab-case words. */
  name: string;
  /** Statements run in the migration's transaction. */
  sql: string;
}

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "api-keys",
    sql: `
      -- One row: the fingerprint of the secret keys are HMAC'd with, and a version bumped by every
      -- create and revoke, which each process polls to know when to read the keys again.
      create table loupe_key_store (
        singleton boolean primary key default true check (singleton),
        version bigint not null default 0,
        secret_fingerprint text
      );
      insert into loupe_key_store (singleton) values (true);

      create table loupe_api_keys (
        seq bigint generated always as identity,
        id text primary key check (id ~ '^key_[0-9a-f]{16}$'),
        hash text not null unique check (hash ~ '^[0-9a-f]{64}$'),
        name text,
        tenant text not null,
        scopes text[] not null,
        publishable boolean not null,
        origins text[] not null,
        rate_limit_per_second double precision,
        rate_limit_burst integer,
        created_at timestamptz not null,
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz,
        check ((rate_limit_per_second is null) = (rate_limit_burst is null))
      );
      create index loupe_api_keys_tenant on loupe_api_keys (tenant, seq);
    `,
  },
  {
    version: 2,
    name: "audit-log",
    sql: `
      -- One row per audited action, appended only; seq keeps the order they were recorded in.
      create table loupe_audit_log (
        seq bigint generated always as identity primary key,
        time timestamptz not null,
        action text not null check (action ~ '^[a-z]+([.][a-z]+)*$'),
        key_id text,
        tenant text not null check (tenant ~ '^[A-Za-z0-9_.@:-]{1,128}$'),
        route text not null,
        request_id text,
        item_ids text[] not null,
        detail jsonb check (detail is null or jsonb_typeof(detail) = 'object')
      );
      create index loupe_audit_log_tenant_time on loupe_audit_log (tenant, time);
    `,
  },
  {
    version: 3,
    name: "feedback",
    sql: `
      -- Feedback on answers, appended only; the whole entry is kept as it was recorded.
      create table loupe_feedback (
        seq bigint generated always as identity primary key,
        id text not null unique check (id ~ '^fb_[0-9a-f]{32}$'),
        tenant text not null check (tenant ~ '^[A-Za-z0-9_.@:-]{1,128}$'),
        time timestamptz not null,
        rating text not null check (rating in ('up', 'down')),
        proposal_id text check (proposal_id is null or proposal_id ~ '^fbp_[0-9a-f]{32}$'),
        entry jsonb not null check (jsonb_typeof(entry) = 'object')
      );
      create index loupe_feedback_tenant_time on loupe_feedback (tenant, time);

      -- The triples feedback proposed, one row each; a decision (approved, rejected) is final.
      create table loupe_feedback_proposals (
        tenant text not null check (tenant ~ '^[A-Za-z0-9_.@:-]{1,128}$'),
        id text collate "C" not null check (id ~ '^fbp_[0-9a-f]{32}$'),
        status text not null check (status in ('pending', 'approved', 'rejected')),
        created_at timestamptz not null,
        proposal jsonb not null check (jsonb_typeof(proposal) = 'object'),
        primary key (tenant, id)
      );
      create index loupe_feedback_proposals_order on loupe_feedback_proposals (tenant, created_at, id);
    `,
  },
  {
    version: 4,
    name: "classifiers",
    sql: `
      -- One row per classifier, replaced whole by each save; names sort as the file store lists them.
      create table loupe_classifiers (
        tenant text not null check (tenant ~ '^[A-Za-z0-9_.@:-]{1,128}$'),
        name text collate "C" not null check (name ~ '^[A-Za-z][A-Za-z0-9_]{0,57}$'),
        model_id text not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        classifier jsonb not null check (jsonb_typeof(classifier) = 'object'),
        primary key (tenant, name)
      );
    `,
  },
  {
    version: 5,
    name: "user-events",
    sql: `
      -- Users' interactions, appended; seq keeps each user's order. Trimmed to the newest events per
      -- user by the store once a user has more than twice the limit.
      create table loupe_user_events (
        seq bigint generated always as identity primary key,
        tenant text not null check (tenant ~ '^[A-Za-z0-9_.@:-]{1,128}$'),
        user_id text not null check (user_id ~ '^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$'),
        item text not null check (char_length(item) between 1 and 256),
        type text not null check (type in ('view', 'like', 'dislike', 'select')),
        at timestamptz not null
      );
      create index loupe_user_events_user on loupe_user_events (tenant, user_id, seq);
    `,
  },
  {
    version: 6,
    name: "ingest-jobs",
    sql: `
      -- Ingest jobs whose items run on the Redis work queue (src/ingest/shared-jobs.ts); any replica reads them.
      create table loupe_jobs (
        id text primary key check (id ~ '^job_[0-9a-f]{24}$'),
        tenant text not null check (tenant ~ '^[A-Za-z0-9_.@:-]{1,128}$'),
        kind text not null check (kind in ('images')),
        status text not null check (status in ('queued', 'running', 'done', 'failed')),
        created_at timestamptz not null,
        started_at timestamptz,
        finished_at timestamptz,
        error jsonb check (error is null or jsonb_typeof(error) = 'object'),
        -- What the workers need besides each item: the default source, who asked (for the audit trail).
        spec jsonb not null check (jsonb_typeof(spec) = 'object')
      );
      create index loupe_jobs_finished on loupe_jobs (finished_at);

      -- One row per item; seq orders changes, so a follower reads only what changed since it last looked.
      create sequence loupe_job_items_seq;
      create table loupe_job_items (
        job_id text not null references loupe_jobs (id) on delete cascade,
        item_index integer not null check (item_index >= 0),
        seq bigint not null default nextval('loupe_job_items_seq'),
        status text not null check (status in ('pending', 'stored', 'skipped', 'failed')),
        describe jsonb not null check (jsonb_typeof(describe) = 'object'),
        -- The item's input without its bytes; the bytes of an upload, dropped once the item is done.
        input jsonb not null check (jsonb_typeof(input) = 'object'),
        bytes bytea,
        record_id text,
        error jsonb check (error is null or jsonb_typeof(error) = 'object'),
        detail jsonb check (detail is null or jsonb_typeof(detail) = 'object'),
        attempts integer not null default 0,
        primary key (job_id, item_index)
      );
      create index loupe_job_items_changes on loupe_job_items (job_id, seq);
    `,
  },
  {
    version: 7,
    name: "video-jobs",
    sql: `
      -- Video ingest jobs run on the shared queue too; their uploads wait in the blob store, not in a row.
      alter table loupe_jobs drop constraint loupe_jobs_kind_check;
      alter table loupe_jobs add constraint loupe_jobs_kind_check check (kind in ('images', 'videos'));
    `,
  },
  {
    version: 8,
    name: "listed-jobs",
    sql: `
      -- Triple ingest, OCR and region backfills and pack switches run on the shared queue too. The last
      -- three find their items by listing the store, which a worker does as the job's first step: until it
      -- has listed them all, the job cannot end.
      alter table loupe_jobs drop constraint loupe_jobs_kind_check;
      alter table loupe_jobs add constraint loupe_jobs_kind_check
        check (kind in ('images', 'videos', 'triples', 'ocr', 'regions', 'migrate'));
      alter table loupe_jobs add column listed boolean not null default true;
      -- Records the listing found done already: counted in the job's total and skipped, never as items.
      alter table loupe_jobs add column unlisted_skipped integer not null default 0 check (unlisted_skipped >= 0);
      -- Set when a job's ending step (a switch) is queued, so it is queued once however many workers settle.
      alter table loupe_jobs add column ending boolean not null default false;
      -- One backfill of a kind per tenant at a time, and one pack switch at all, whichever replica is asked.
      create unique index loupe_jobs_one_active on loupe_jobs ((case when kind = 'migrate' then '' else tenant end), kind)
        where status in ('queued', 'running') and kind in ('ocr', 'regions', 'migrate');
      -- What a listed item stands for (a record, a video), so listing again never adds it twice.
      alter table loupe_job_items add column item_key text;
      create unique index loupe_job_items_key on loupe_job_items (job_id, item_key) where item_key is not null;
    `,
  },
  {
    version: 9,
    name: "blob-references",
    sql: `
      -- Which labels (a record's owner, or an ingest's claim under it) use which blob of an S3 blob store
      -- (src/media/pg-blob-references.ts); store is the bucket and key prefix, s3://<bucket>/<prefix>.
      create table loupe_blob_refs (
        store text not null check (char_length(store) between 6 and 1200),
        sha256 text collate "C" not null check (sha256 ~ '^[0-9a-f]{64}$'),
        label text collate "C" not null
          check (label ~ '^[A-Za-z0-9_.@:/-]+$' and char_length(label) <= 300),
        touched_at timestamptz not null,
        primary key (store, sha256, label)
      );

      -- The stores whose reference objects (<sha256>.refs/<label>) were copied into loupe_blob_refs.
      create table loupe_blob_ref_imports (
        store text primary key,
        imported_at timestamptz not null,
        refs integer not null
      );
    `,
  },
];
