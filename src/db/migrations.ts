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
];
