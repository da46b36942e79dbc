/** The map between the ids Loupe gives stored items and the ids a suite uses for them. */

/** Stored ids (`img_…`, `vid_…`, `tri_…`) ↔ the suite's ids. */
export class IdMap {
  readonly #suiteOf = new Map<string, string>();
  readonly #storedOf = new Map<string, string>();

  add(suiteId: string, storedId: string): void {
    this.#storedOf.set(suiteId, storedId);
    // Identical media get one stored id; the first suite id names it.
    if (!this.#suiteOf.has(storedId)) this.#suiteOf.set(storedId, suiteId);
  }
  stored(suiteId: string): string | undefined {
    return this.#storedOf.get(suiteId);
  }
  /** The suite id of a stored id, or the id itself (attachments, segments, unknown items). */
  suite(id: string): string {
    return this.#suiteOf.get(id) ?? id;
  }
  /**
   * One name per item: a suite id whose media was stored under the same id as an earlier one names
   * that earlier one, and a stored id of a corpus item names the corpus id.
   */
  canonical(id: string): string {
    const stored = this.#storedOf.get(id) ?? id;
    return this.#suiteOf.get(stored) ?? id;
  }
}
