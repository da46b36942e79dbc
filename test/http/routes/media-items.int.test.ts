import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blobRef, parseBlobRef, sha256Hex } from "../../../src/media/blob-store.ts";
import { recordId } from "../../../src/store/index.ts";
import {
  type IngestHarness,
  multipart,
  renderShapes,
  startIngestHarness,
  TENANT_HEADER,
} from "../../ingest/harness.ts";

interface ImagesBody {
  items: Array<{ id?: string; status: string }>;
}

describe("GET /v1/media/{id} and DELETE /v1/items/{id}", () => {
  let harness: IngestHarness;
  let images: Buffer[];

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "media" });
    images = await renderShapes({ count: 3, seed: 11 });
  }, 120_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const as = (tenant: string, init: RequestInit = {}) => ({
    ...init,
    headers: { ...(init.headers as Record<string, string> | undefined), [TENANT_HEADER]: tenant },
  });

  async function upload(tenant: string, bytes: Buffer, name = "a.jpg"): Promise<string> {
    const response = await harness.app.request(
      "/v1/images",
      as(tenant, { method: "POST", body: multipart({ files: [{ name, bytes }] }) }),
    );
    const body = (await response.json()) as ImagesBody;
    const id = body.items[0]?.id;
    if (id === undefined) throw new Error(`upload failed: ${JSON.stringify(body)}`);
    return id;
  }

  it("serves the original and the thumbnail only to the owning tenant", async () => {
    const id = await upload("alpha", images[0] as Buffer);
    const original = await harness.app.request(`/v1/media/${id}`, as("alpha"));
    expect(original.status).toBe(200);
    expect(original.headers.get("content-type")).toBe("image/jpeg");
    expect(original.headers.get("x-content-type-options")).toBe("nosniff");
    expect(original.headers.get("etag")).toBe(`"${sha256Hex(images[0] as Buffer)}"`);
    expect(Buffer.from(await original.arrayBuffer())).toEqual(images[0]);

    const thumbnail = await harness.app.request(`/v1/media/${id}/thumbnail`, as("alpha"));
    expect(thumbnail.status).toBe(200);
    expect(thumbnail.headers.get("content-type")).toBe("image/webp");
    expect((await thumbnail.arrayBuffer()).byteLength).toBeGreaterThan(0);

    const cached = await harness.app.request(
      `/v1/media/${id}`,
      as("alpha", { headers: { "if-none-match": original.headers.get("etag") ?? "" } }),
    );
    expect(cached.status).toBe(304);

    for (const path of [`/v1/media/${id}`, `/v1/media/${id}/thumbnail`]) {
      const other = await harness.app.request(path, as("beta"));
      expect(other.status).toBe(404);
      expect(((await other.json()) as { error: { message: string } }).error.message).toBe(`No item ${id}.`);
    }
  });

  it("answers 400 for malformed ids and 404 for unknown ones", async () => {
    const bad = await harness.app.request("/v1/media/..%2F..%2Fetc", as("alpha"));
    expect(bad.status).toBe(400);
    const unknownPrefix = await harness.app.request("/v1/media/abc_123", as("alpha"));
    expect(unknownPrefix.status).toBe(400);
    expect(((await unknownPrefix.json()) as { error: { message: string } }).error.message).toContain(
      "must start with img_, seg_, tri_, reg_ or vid_",
    );
    const missing = await harness.app.request(`/v1/media/img_${"0".repeat(32)}`, as("alpha"));
    expect(missing.status).toBe(404);
  });

  it("delete removes the vectors, and blobs only once no record of any tenant refers to them", async () => {
    const bytes = images[1] as Buffer;
    const alphaId = await upload("alpha", bytes);
    const betaId = await upload("beta", bytes);
    expect(alphaId).not.toBe(betaId);
    const [record] = await harness.store.get({ kind: "image", tenant: "alpha", ids: [alphaId] });
    const originalKey = parseBlobRef(record?.mediaRef ?? "") as string;
    const thumbnailKey = parseBlobRef(String(record?.metadata.thumbnailRef)) as string;
    expect(await harness.blobs.references(originalKey)).toEqual([`alpha/${alphaId}`, `beta/${betaId}`]);

    // Another tenant cannot delete it.
    expect((await harness.app.request(`/v1/items/${alphaId}`, as("beta", { method: "DELETE" }))).status).toBe(
      404,
    );

    const first = await harness.app.request(`/v1/items/${alphaId}`, as("alpha", { method: "DELETE" }));
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({
      deleted: { id: alphaId, kind: "image", records: 1, blobsRemoved: 0 },
    });
    expect(await harness.store.get({ kind: "image", tenant: "alpha", ids: [alphaId] })).toEqual([]);
    expect(await harness.blobs.has(originalKey)).toBe(true);
    expect((await harness.app.request(`/v1/media/${alphaId}`, as("alpha"))).status).toBe(404);
    expect((await harness.app.request(`/v1/media/${betaId}`, as("beta"))).status).toBe(200);

    const second = await harness.app.request(`/v1/items/${betaId}`, as("beta", { method: "DELETE" }));
    expect(await second.json()).toEqual({
      deleted: { id: betaId, kind: "image", records: 1, blobsRemoved: 2 },
    });
    expect(await harness.blobs.has(originalKey)).toBe(false);
    expect(await harness.blobs.has(thumbnailKey)).toBe(false);

    expect((await harness.app.request(`/v1/items/${betaId}`, as("beta", { method: "DELETE" }))).status).toBe(
      404,
    );
  });

  it("serves a triple's image, also as its thumbnail, and deleting the triple releases it", async () => {
    const tenant = "alpha";
    const { sha256 } = await harness.blobs.put({ bytes: images[2] as Buffer, contentType: "image/jpeg" });
    const id = recordId({
      kind: "triple",
      tenant,
      contentSha256: sha256,
      modelId: harness.models.modelId,
      question: "What color is the circle?",
    });
    await harness.blobs.addReference({ sha256, owner: `${tenant}/${id}` });
    const vector = new Float32Array(harness.models.dimension).fill(0.1);
    await harness.store.upsert({
      kind: "triple",
      tenant,
      records: [
        {
          id,
          modelId: harness.models.modelId,
          mediaRef: blobRef(sha256),
          source: "upload",
          imageVector: vector,
          questionVector: vector,
          question: "What color is the circle?",
          answer: "red",
        },
      ],
    });
    for (const path of [`/v1/media/${id}`, `/v1/media/${id}/thumbnail`]) {
      const response = await harness.app.request(path, as(tenant));
      expect(response.status).toBe(200);
      expect(Buffer.from(await response.arrayBuffer())).toEqual(images[2]);
    }
    const deleted = await harness.app.request(`/v1/items/${id}`, as(tenant, { method: "DELETE" }));
    expect(await deleted.json()).toEqual({ deleted: { id, kind: "triple", records: 1, blobsRemoved: 1 } });
    expect(await harness.blobs.has(sha256)).toBe(false);
  });

  it("deleting a video removes all its segments and their blobs", async () => {
    const tenant = "alpha";
    const video = Buffer.from("not really a video, but bytes to store");
    const videoSha = sha256Hex(video);
    const videoId = `vid_${"ab".repeat(16)}`;
    const { sha256: original } = await harness.blobs.put({ bytes: video, contentType: "video/mp4" });
    await harness.blobs.addReference({ sha256: original, owner: `${tenant}/${videoId}` });
    const segments = [];
    for (const [index, span] of [
      [0, 2],
      [2, 4],
    ].entries()) {
      const { sha256: keyframe } = await harness.blobs.put({
        bytes: images[2 - index] as Buffer,
        contentType: "image/jpeg",
      });
      const id = recordId({
        kind: "video_segment",
        tenant,
        contentSha256: videoSha,
        modelId: harness.models.modelId,
        startS: span[0] as number,
        endS: span[1] as number,
      });
      await harness.blobs.addReference({ sha256: keyframe, owner: `${tenant}/${id}` });
      segments.push({
        id,
        modelId: harness.models.modelId,
        mediaRef: blobRef(original),
        source: "upload",
        vector: new Float32Array(harness.models.dimension).fill(0.1),
        videoId,
        startS: span[0] as number,
        endS: span[1] as number,
        keyframeRef: blobRef(keyframe),
      });
    }
    await harness.store.upsert({ kind: "video_segment", tenant, records: segments });

    const media = await harness.app.request(`/v1/media/${videoId}`, as(tenant));
    expect(media.headers.get("content-type")).toBe("video/mp4");
    expect((await harness.app.request(`/v1/media/${segments[0]?.id}/thumbnail`, as(tenant))).status).toBe(
      200,
    );

    const response = await harness.app.request(`/v1/items/${videoId}`, as(tenant, { method: "DELETE" }));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      deleted: { id: videoId, kind: "video", records: 2, blobsRemoved: 3 },
    });
    expect(await harness.store.count({ kind: "video_segment", tenant })).toBe(0);
    expect(await harness.blobs.has(original)).toBe(false);
  });
});
