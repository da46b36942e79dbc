/**
 * The classifier store port, and its file adapter: one JSON file per classifier under
 * `<dir>/t_<tenant>/<name>.json`, written atomically (temporary file, fsync, rename), so a crash never
 * leaves a half-written classifier and a restart finds every one that was saved. A save under a cap
 * (`maxPerTenant`) counts and writes under a per-tenant lock of this process. The PostgreSQL adapter
 * (`LOUPE_DATABASE_URL`) is `pg-classifier-store.ts`.
 */
import { mkdir, readdir, readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { syncDirectory, writeFileAtomic } from "../auth/atomic-file.ts";
import { createKeyedLock } from "../auth/keyed-lock.ts";
import { ConflictError, StoreError, ValidationError } from "../errors.ts";
import { CLASSIFIER_NAME_PATTERN, type StoredClassifier } from "./classifier.ts";

/** Where classifiers are kept. Every call is scoped to one tenant. */
export interface ClassifierStore {
  /** The tenant's classifiers, by name. */
  list(request: { tenant: string }): Promise<StoredClassifier[]>;
  /** The classifier, or undefined when the tenant has none of that name. */
  get(request: { tenant: string; name: string }): Promise<StoredClassifier | undefined>;
  /**
   * Creates or replaces the classifier of that name. With `maxPerTenant`, a classifier new to the tenant
   * is refused when the tenant has that many already; the count and the write are one step, so
   * concurrent saves (in this process or in other replicas) never go past the cap. With `ifAbsent`, a
   * classifier of that name stored meanwhile (by a concurrent create) is not replaced.
   *
   * @throws ValidationError ({@link tooManyClassifiers}) when a new classifier would pass `maxPerTenant`;
   *   ConflictError ({@link classifierExists}) with `ifAbsent` when the name is taken.
   */
  put(classifier: StoredClassifier, options?: { maxPerTenant?: number; ifAbsent?: boolean }): Promise<void>;
  /** Removes it; false when there was none. */
  delete(request: { tenant: string; name: string }): Promise<boolean>;
}

/** The error of a save refused because the tenant has `count` classifiers, `max` being the most allowed. */
export function tooManyClassifiers({ count, max }: { count: number; max: number }): ValidationError {
  return new ValidationError(
    `The tenant has ${count} classifiers, the most allowed (${max}); delete one first.`,
    {
      context: { count, max },
    },
  );
}

/** The refusal of a classifier name the tenant has already, for a create without `replace`. */
export function classifierExists(name: string): ConflictError {
  return new ConflictError(
    `A classifier named "${name}" exists already. Pick another name, add examples with POST /v1/classifiers/${name}/examples, or send "replace": true to replace it.`,
    { context: { name } },
  );
}

/**
 * Saves under a cap of one tenant's folder run one at a time in this process, whichever store instance
 * makes them: the lock is the folder's, as the folder is the process's to share.
 */
const capLock = createKeyedLock();

/** The tenant's folder: `t_<tenant>`, so no tenant name (checked against `TENANT_PATTERN` upstream) is `.` or `..`. */
function tenantFolder(dir: string, tenant: string): string {
  if (tenant.length === 0 || tenant.includes("/") || tenant.includes("\\")) {
    throw new StoreError(`Invalid tenant for the classifier store: ${JSON.stringify(tenant.slice(0, 80))}.`);
  }
  return path.join(dir, `t_${tenant}`);
}

/** The file adapter of {@link ClassifierStore}, over `dir` (`<LOUPE_DATA_DIR>/classifiers`). */
export function createFileClassifierStore({ dir }: { dir: string }): ClassifierStore {
  const fileOf = (tenant: string, name: string) => path.join(tenantFolder(dir, tenant), `${name}.json`);
  const read = async (file: string): Promise<StoredClassifier | undefined> => {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    try {
      return JSON.parse(text) as StoredClassifier;
    } catch (error) {
      throw new StoreError(`The classifier file ${file} is not valid JSON; restore it or delete it.`, {
        cause: error,
      });
    }
  };
  return {
    async list({ tenant }) {
      let names: string[];
      try {
        names = await readdir(tenantFolder(dir, tenant));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
        throw error;
      }
      const found: StoredClassifier[] = [];
      for (const file of names.sort()) {
        if (!file.endsWith(".json") || !CLASSIFIER_NAME_PATTERN.test(file.slice(0, -5))) continue;
        const classifier = await read(path.join(tenantFolder(dir, tenant), file));
        if (classifier?.tenant === tenant) found.push(classifier);
      }
      return found;
    },
    async get({ tenant, name }) {
      // The pattern keeps the name a plain file name; the folder keeps it the tenant's own.
      if (!CLASSIFIER_NAME_PATTERN.test(name)) return undefined;
      const classifier = await read(fileOf(tenant, name));
      return classifier?.tenant === tenant ? classifier : undefined;
    },
    async put(classifier, { maxPerTenant, ifAbsent = false } = {}) {
      if (!CLASSIFIER_NAME_PATTERN.test(classifier.name)) {
        throw new StoreError(`Invalid classifier name ${JSON.stringify(classifier.name.slice(0, 80))}.`);
      }
      const folder = tenantFolder(dir, classifier.tenant);
      const file = fileOf(classifier.tenant, classifier.name);
      const write = async () => {
        await mkdir(folder, { recursive: true, mode: 0o700 });
        await writeFileAtomic(file, JSON.stringify(classifier));
      };
      if (maxPerTenant === undefined && !ifAbsent) return write();
      await capLock(path.resolve(folder), async () => {
        const names = await readdir(folder).catch((error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT") return [];
          throw error;
        });
        const stored = names.filter(
          (name) => name.endsWith(".json") && CLASSIFIER_NAME_PATTERN.test(name.slice(0, -5)),
        );
        const present = stored.includes(path.basename(file));
        if (present && ifAbsent) throw classifierExists(classifier.name);
        if (!present && maxPerTenant !== undefined && stored.length >= maxPerTenant) {
          throw tooManyClassifiers({ count: stored.length, max: maxPerTenant });
        }
        await write();
      });
    },
    async delete({ tenant, name }) {
      if (!CLASSIFIER_NAME_PATTERN.test(name)) return false;
      try {
        await unlink(fileOf(tenant, name));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
        throw error;
      }
      await syncDirectory(tenantFolder(dir, tenant));
      return true;
    },
  };
}
