import { describe, expect, it } from "vitest";
import { StoreError } from "../../src/errors.ts";
import { assertOk, callMilvus, redactAddresses, toStoreError } from "../../src/store/milvus-client.ts";

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
    const unavailable = Object.assign(
      new Error("14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1"),
      { code: 14 },
    );
    const error = toStoreError(unavailable, "search", "127.0.0.1:1");
    expect(error).toMatchObject({
      code: "store_unavailable",
      message: expect.stringContaining("Milvus is unreachable (search)"),
      context: { address: "127.0.0.1:1", detail: unavailable.message },
    });
    expect(error.message).not.toContain("127.0.0.1");
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

describe("redactAddresses", () => {
  it("withholds URLs, host:port, IPv4 and IPv6 addresses, and leaves the rest", () => {
    expect(
      redactAddresses(
        "upsert failed against http://milvus.internal:19530/x: connect ECONNREFUSED 127.0.0.1:33105, also 10.0.0.7 and [::1]:19530 and fe80::1 and milvus-0.svc:19530",
      ),
    ).toBe(
      "upsert failed against [address withheld]: connect ECONNREFUSED [address withheld], also [address withheld] and [address withheld] and [address withheld] and [address withheld]",
    );
    const plain =
      "13 INTERNAL: Exception deserializing request! (retried 1 times, 26ms); 'utf-8' codec can't encode character '\\ud800' in position 8";
    expect(redactAddresses(plain)).toBe(plain);
  });

  it("keeps addresses out of every message the SDK's errors become", () => {
    const sdk = new Error("9 FAILED_PRECONDITION: node 127.0.0.1:19530 said no");
    const error = toStoreError(sdk, "query loupe_images", "127.0.0.1:19530");
    expect(error.message).toBe(
      "Query loupe_images failed in Milvus: 9 FAILED_PRECONDITION: node [address withheld] said no.",
    );
    expect(
      toStoreError({ error_code: "UnexpectedError", reason: "proxy 10.1.2.3:19530 not ready", code: 1 }, "x")
        .message,
    ).toBe("Milvus refused x: proxy [address withheld] not ready.");
  });
});

describe("callMilvus", () => {
  it("bounds a call that never settles", async () => {
    const started = Date.now();
    await expect(
      callMilvus({ what: "search", timeoutMs: 50, call: () => new Promise(() => undefined) }),
    ).rejects.toMatchObject({
      code: "store_timeout",
      message: "Milvus did not answer search within 50 ms (MILVUS_TIMEOUT_MS).",
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
