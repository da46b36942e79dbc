import { describe, expect, it } from "vitest";
import { en } from "../../web/src/i18n.ts";
import {
  attachmentProblem,
  DEFAULT_LIMITS,
  describeLimits,
  effectiveImageBytes,
  parseLimits,
} from "../../web/src/limits.ts";

describe("the chat limits in the UI", () => {
  it("reads the limits the server wrote, keeping defaults for anything missing or malformed", () => {
    expect(parseLimits('{"maxImages":2,"maxImageBytes":1000,"maxJsonBytes":500000,"maxTurns":6}')).toEqual({
      maxImages: 2,
      maxImageBytes: 1000,
      maxJsonBytes: 500000,
      maxTurns: 6,
    });
    expect(parseLimits('{"maxImages":-1,"maxTurns":"9"}')).toEqual(DEFAULT_LIMITS);
    expect(parseLimits("__LOUPE_LIMITS__")).toEqual(DEFAULT_LIMITS);
    expect(parseLimits(undefined)).toEqual(DEFAULT_LIMITS);
  });

  it("lets through only images that fit both the image limit and a JSON body as base64", () => {
    expect(effectiveImageBytes({ ...DEFAULT_LIMITS, maxImageBytes: 1000 })).toBe(1000);
    const tight = { ...DEFAULT_LIMITS, maxImages: 4, maxJsonBytes: 4 * 1024 * 1024 };
    expect(effectiveImageBytes(tight) * 4 * (4 / 3)).toBeLessThanOrEqual(tight.maxJsonBytes);
  });

  it("refuses before sending: too large, too many, not an image; states the limits", () => {
    const limits = { ...DEFAULT_LIMITS, maxImages: 2, maxImageBytes: 1024 * 1024 };
    const png = { name: "shot.png", type: "image/png", size: 1000 };
    expect(attachmentProblem(png, 0, limits, en)).toBeNull();
    expect(attachmentProblem({ ...png, size: 2 * 1024 * 1024 }, 0, limits, en)).toBe(
      "shot.png is too large: images may be at most 1 MB.",
    );
    expect(attachmentProblem(png, 2, limits, en)).toContain("Too many images: at most 2");
    expect(attachmentProblem({ ...png, type: "application/pdf", name: "a.pdf" }, 0, limits, en)).toContain(
      "a.pdf is not an image",
    );
    expect(describeLimits(limits, en)).toBe("Up to 2 images, 1 MB each. Paste or drop a screenshot here.");
  });
});
