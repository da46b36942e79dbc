/**
 * Reading back a JSON Lines file the generator wrote (`scenes.jsonl`, `vqa.jsonl`, `videos.jsonl`, …).
 * The generator's own files are trusted: lines are parsed, not validated.
 */
import { readFile } from "node:fs/promises";

/** Every non-blank line of `file`, parsed as JSON. */
export async function readJsonl<T>(file: string): Promise<T[]> {
  return (await readFile(file, "utf8"))
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line) as T);
}
