/**
 * Which process-wide queue a heavy request waits in: the path's segment after `/v1/`, except that the
 * Responses API runs the chat chain and so shares chat's queue (a second queue would double the chat
 * work allowed at once).
 */
import { describe, expect, it } from "vitest";
import { heavyKindOf } from "../../../src/http/limits/heavy-gate.ts";

describe("heavyKindOf", () => {
  it("names the queue after the path, with /v1/responses in chat's", () => {
    expect(heavyKindOf("/v1/chat")).toBe("chat");
    expect(heavyKindOf("/v1/chat/completions")).toBe("chat");
    expect(heavyKindOf("/v1/responses")).toBe("chat");
    expect(heavyKindOf("/v1/images")).toBe("images");
    expect(heavyKindOf("/")).toBe("heavy");
  });
});
