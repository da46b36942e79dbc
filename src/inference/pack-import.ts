/**
 * Importing a pack that has no Loupe manifest (a folder as the Hugging Face hub serves it, or an export made
 * by hand): its JSON files are validated, its tokenizer is loaded, every model it uses is opened and its input
 * and output names checked, and only then is `manifest.json` written in place, listing the files Loupe reads.
 */
import { join, resolve } from "node:path";
import { ModelPackError } from "../errors.ts";
import { MANIFEST_FILE, verifyManifest, writeManifest } from "./manifest.ts";
import { loadModelPack, type ModelPackInfo, packFiles, packUsedFiles, pathExists } from "./model-pack.ts";
import { type Manifest, manifestSchema, readPackJson } from "./pack-config.ts";
import type { SessionSettings } from "./session.ts";

/** Documentation files a manifest lists too when the pack has them. */
const DOCUMENT_FILES = ["MODEL_CARD.md", "README.md"] as const;

/** What {@link importPack} did. */
export interface ImportedPack {
  info: ModelPackInfo;
  manifest: Manifest;
  /** `written`: a new manifest; `unchanged`: the pack already had one that covers and verifies its files. */
  outcome: "written" | "unchanged";
}

/**
 * Checks a pack and writes its `manifest.json`. A manifest already there that lists every used file and
 * verifies is left as it is; one that does not verify is replaced only with `force` (the files changed since
 * it was written, and a new manifest would bless the change).
 *
 * @throws ModelPackError naming the file or model that is missing, invalid or has the wrong inputs/outputs.
 */
export async function importPack({
  dir,
  force = false,
  sessionOptions = {},
}: {
  dir: string;
  force?: boolean;
  sessionOptions?: SessionSettings;
}): Promise<ImportedPack> {
  const absolute = resolve(dir);
  // Every check of a load except the hashes: JSON files, tokenizer, heads declared, models' input/output names.
  const pack = await loadModelPack({ dir: absolute, verifyHashes: false, sessions: "eager", sessionOptions });
  const info = pack.info;
  await pack.close();

  const used = await packUsedFiles({ info });
  for (const file of DOCUMENT_FILES) if (await pathExists(join(absolute, file))) used.push(file);

  if (await pathExists(join(absolute, MANIFEST_FILE))) {
    const current = await readExistingManifest(absolute);
    const covers = current !== undefined && used.every((file) => current.files[file] !== undefined);
    let verifies = false;
    if (current !== undefined) {
      try {
        await verifyManifest({ dir: absolute, manifest: current });
        verifies = true;
      } catch (error) {
        if (!(error instanceof ModelPackError)) throw error;
        if (!force) {
          throw new ModelPackError(
            `${error.message} The pack's manifest.json no longer matches its files; import it again with --force ` +
              "only if the changed files are the ones you mean to use.",
            { cause: error, context: { dir: absolute } },
          );
        }
      }
    }
    if (current !== undefined && covers && verifies) return { info, manifest: current, outcome: "unchanged" };
    if (current === undefined && !force) {
      throw new ModelPackError(
        `Model pack ${absolute} has a manifest.json that is not a valid manifest; import it with --force to replace it.`,
        { context: { dir: absolute, file: MANIFEST_FILE } },
      );
    }
  }
  const manifest = await writeManifest({ dir: absolute, files: used });
  return { info, manifest, outcome: "written" };
}

async function readExistingManifest(dir: string): Promise<Manifest | undefined> {
  try {
    return await readPackJson({ dir, file: packFiles.manifest, schema: manifestSchema });
  } catch (error) {
    if (error instanceof ModelPackError) return undefined;
    throw error;
  }
}
