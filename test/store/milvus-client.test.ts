import { describe, expect, it } from "vitest";
import { StoreError } from "../../src/errors.ts";
import { assertOk, callMilvus, toStoreError } from "../../src/store/milvus-client.ts";

const success = { error_code: "Success", reason: "", code: 0 };

describe("assertOk", () => {
  it("passes status replies and replies carrying a success status", () => {
    expect(assertOk(success, "createCollection")).toBe(success);
    const reply = { status: success, data: [] };
    expect(assertOk(reply, "query")).toBe(reply);
    expect(assertOk({ status: { error_code: 0, code: 0 } }, "query")).toBeTruthy();
  });

  it("treats a reply without a status as a failure (Lite's answer to unimplemented calls)", () => {
    expect(() => assertOk({}, "getIndexState loupe_images")).toThrow(StoreError);
    expect(() => assertOk({}, "getIndexState loupe_images")).toThrow(
      /without a status; the server does not implement/,
    );
    expect(() => assertOk(undefined, "x")).toThrow(StoreError);
  });

  it("throws with Milvus's reason on a failure status", () => {
    const reply = { status: { error_code: "UnexpectedError", reason: "collection not found", code: 100 } };
    expect(() => assertOk(reply, "search loupe_images")).toThrow(
      "Milvus refused search loupe_images: collection not found.",
    );
    expect(() => assertOk({ error_code: "Success", code: 5, reason: "odd" }, "x")).toThrow(/odd/);
  });
});

describe("toStoreError", () => {
  it("types gRPC failures and thrown status objects", () => {
    const unavailable = Object.assign(new Error("14 UNAVAILABLE: No connection established"), { code: 14 });
    expect(toStoreError(unavailable, "search", "127.0.0.1:1")).toMatchObject({
      code: "store_unavailable",
      message: expect.stringContaining("Milvus at 127.0.0.1:1 is unreachable"),
    });
    const deadline = Object.assign(new Error("4 DEADLINE_EXCEEDED"), { code: 4 });
    expect(toStoreError(deadline, "search")).toMatchObject({ code: "store_timeout" });
    expect(
      toStoreError({ error_code: "UnexpectedError", reason: "already exists", code: 1 }, "create"),
    ).toMatchObject({
      code: "store_rejected",
      message: "Milvus refused create: already exists.",
    });
  });
});

describe("callMilvus", () => {
  it("bounds a call that never settles", async () => {
    const started = Date.now();
    await expect(
      callMilvus({ what: "search", timeoutMs: 50, call: () => new Promise(() => undefined) }),
    ).rejects.toMatchObject({
      code: "store_timeout",
      message: "Milvus did not answer search within 50 ms.",
    });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("checks the status unless told not to", async () => {
    await expect(callMilvus({ what: "x", timeoutMs: 1000, call: async () => ({}) })).rejects.toThrow(
      StoreError,
    );
    await expect(
      callMilvus({ what: "x", timeoutMs: 1000, call: async () => ({}), unchecked: true }),
    ).resolves.toEqual({});
  });
});
