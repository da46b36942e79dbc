/** Keys never reach the log: the logger's redaction of credential headers and fields, and the key secret in the logged configuration. */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseConfig, redactConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";

const KEY = `loupe_sk_${"Q".repeat(43)}`;

function capture() {
  const lines: string[] = [];
  const logger = createLogger({
    level: "info",
    destination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  });
  return { logger, lines };
}

describe("redaction", () => {
  it("hides authorization and x-api-key headers, and authorization and apiKey fields, up to two objects down", () => {
    const { logger, lines } = capture();
    const headers = { authorization: `Bearer ${KEY}`, "x-api-key": KEY, accept: "application/json" };
    logger.info({ headers }, "top");
    logger.info({ req: { headers } }, "one down");
    logger.info({ err: { request: { headers } } }, "two down");
    logger.info({ authorization: `Bearer ${KEY}`, apiKey: KEY, "x-api-key": KEY }, "fields");
    logger.info({ client: { apiKey: KEY, authorization: KEY } }, "nested fields");
    const text = lines.join("");
    expect(lines).toHaveLength(5);
    expect(text).not.toContain(KEY);
    expect(text).toContain("(hidden)");
    expect(text).toContain("application/json");
  });

  it("hides LOUPE_KEY_SECRET in the logged configuration and in error messages", () => {
    const secret = "s".repeat(40);
    expect(redactConfig(parseConfig({ env: { LOUPE_KEY_SECRET: secret } })).keySecret).toBe("(hidden)");
    expect(() => parseConfig({ env: { LOUPE_KEY_SECRET: "short" } })).toThrow(/LOUPE_KEY_SECRET=\(hidden\)/);
  });
});
