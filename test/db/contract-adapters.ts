/**
 * What the contract tests of the ports with a file and a PostgreSQL adapter share (audit log, feedback,
 * classifiers, user events, API keys): a directory made fresh for each test, for the file adapter; a
 * database of the test file's own for the PostgreSQL adapter (made and migrated on first use, emptied
 * before each test, dropped after the file), on which a store may open a pool of its own, as another
 * process would; adapters over either ({@link onDirectory}, {@link onDatabase}); and
 * {@link describeContract}, which runs the same tests on each adapter and closes every store a test opened.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, afterEach, beforeEach, describe } from "vitest";
import { createDatabasePool, migrate } from "../../src/db/index.ts";
import { createTestDatabase, type TestDatabase } from "./test-database.ts";

/** One adapter under a contract. */
export interface ContractAdapter {
  name: string;
  /** Makes a fresh, empty backing store. */
  reset(): Promise<void>;
  /** A store on the current backing store (another call: another replica, or the same after a restart). */
  open(...options: never[]): object;
  /** Lets go of what the test made (pools, directories); the stores it opened are closed before. */
  cleanup(): Promise<void>;
}

/** A directory made fresh for each test (under the system's temporary folder), removed after it. */
export interface TestDirectory {
  /** The current test's directory. */
  readonly path: string;
  reset(): Promise<void>;
  cleanup(): Promise<void>;
  /** Every line of the JSON Lines file `name` in the directory, parsed. */
  readJsonLines<Line>(name: string): Promise<Line[]>;
}

/** A {@link TestDirectory} named `<prefix><random>`. */
export function testDirectory(prefix: string): TestDirectory {
  let current: string | undefined;
  const made = () => {
    if (current === undefined) throw new Error("The test directory is made by reset(), before each test.");
    return current;
  };
  return {
    get path() {
      return made();
    },
    async reset() {
      current = await mkdtemp(path.join(os.tmpdir(), prefix));
    },
    async cleanup() {
      if (current !== undefined) await rm(current, { recursive: true, force: true });
    },
    async readJsonLines<Line>(name: string) {
      const text = await readFile(path.join(made(), name), "utf8");
      return text
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Line);
    },
  };
}

/** The test file's database under a contract. */
export interface ContractDatabase {
  /** The test file's own pool, for reading rows as stored. */
  readonly pool: pg.Pool;
  readonly url: string;
  /** Makes and migrates the database on first use, then runs the `empty` statements. */
  reset(): Promise<void>;
  /** A pool of its own (as another process would have), ended by {@link ContractDatabase.cleanup}. */
  ownPool(): pg.Pool;
  /** Ends the pools {@link ContractDatabase.ownPool} gave out. */
  cleanup(): Promise<void>;
}

/**
 * A {@link ContractDatabase}, dropped after the test file. `empty` is the SQL that leaves the tables
 * under test as a fresh migration does (e.g. `truncate loupe_audit_log`).
 */
export function contractDatabase({ empty }: { empty: string }): ContractDatabase {
  let database: TestDatabase | undefined;
  let pool: pg.Pool | undefined;
  const ownPools: pg.Pool[] = [];
  const made = <Value>(value: Value | undefined): Value => {
    if (value === undefined) throw new Error("The test database is made by reset(), before each test.");
    return value;
  };
  afterAll(async () => {
    await pool?.end();
    await database?.drop();
  });
  return {
    get pool() {
      return made(pool);
    },
    get url() {
      return made(database).url;
    },
    async reset() {
      database ??= await createTestDatabase();
      if (pool === undefined) {
        pool = createDatabasePool({ url: database.url });
        await migrate({ pool });
      }
      await pool.query(empty);
    },
    ownPool() {
      const own = createDatabasePool({ url: made(database).url, maxConnections: 4 });
      ownPools.push(own);
      return own;
    },
    async cleanup() {
      for (const own of ownPools.splice(0)) await own.end();
    },
  };
}

/** What an adapter over a {@link TestDirectory} or a {@link ContractDatabase} takes from it. */
type Backed = Pick<ContractAdapter, "name" | "reset" | "cleanup">;

/**
 * An adapter named `file` over a directory made fresh for each test (`<prefix><random>`): `adapter`
 * gives its `open` and its readers, on that directory.
 */
export function onDirectory<Adapter extends ContractAdapter>(
  prefix: string,
  adapter: (directory: TestDirectory) => Omit<Adapter, keyof Backed>,
): Adapter {
  const directory = testDirectory(prefix);
  return {
    name: "file",
    reset: directory.reset,
    cleanup: directory.cleanup,
    ...adapter(directory),
  } as Adapter;
}

/**
 * An adapter named `postgres` over the test file's database ({@link contractDatabase}, emptied with
 * `empty`): `adapter` gives its `open` and its readers, on that database, kept as `database`.
 */
export function onDatabase<Adapter extends ContractAdapter>(
  { empty }: { empty: string },
  adapter: (database: ContractDatabase) => Omit<Adapter, keyof Backed>,
): Adapter & { database: ContractDatabase } {
  const database = contractDatabase({ empty });
  return {
    name: "postgres",
    reset: database.reset,
    cleanup: database.cleanup,
    ...adapter(database),
    database,
  } as Adapter & { database: ContractDatabase };
}

/**
 * Runs `tests` once per adapter, in a `describe` titled `title` (`$name` stands for the adapter's name):
 * a fresh backing store before each test; after it, every store the test opened through the adapter
 * closed (where the port can be closed), then the adapter's cleanup.
 */
export function describeContract<Adapter extends ContractAdapter>(
  title: string,
  adapters: Adapter[],
  tests: (adapter: Adapter) => void,
): void {
  describe.each(adapters)(title, (adapter) => {
    const opened: object[] = [];
    const open = (...options: never[]) => {
      const store = adapter.open(...options);
      opened.push(store);
      return store;
    };
    beforeEach(() => adapter.reset());
    afterEach(async () => {
      for (const store of opened.splice(0)) await (store as { close?: () => Promise<void> }).close?.();
      await adapter.cleanup();
    });
    tests({ ...adapter, open } as Adapter);
  });
}
