/**
 * Few-shot classifiers end to end over a real Milvus Lite and the real pack: create, list, get, predict
 * (JSON, item id, upload), add examples, delete; kept across a restart of the services; isolated per
 * tenant; refused with clear errors; fitted again under another model id; and applied at ingest, writing
 * a label into new images' metadata that the filter language finds.
 */

import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { StoredClassifier } from "../../src/classifiers/classifier.ts";
import { ClassifierService } from "../../src/classifiers/classifier-service.ts";
import { createFileClassifierStore } from "../../src/classifiers/classifier-store.ts";
import {
  createClassifierCommand,
  listClassifiersCommand,
  predictClassifierCommand,
} from "../../src/cli/commands/classifiers.ts";
import { createLogger } from "../../src/logger.ts";
import { assembleServices } from "../../src/services.ts";
import { type Color, createRng, deriveSeed, renderScene, sampleScene } from "../../src/synth/index.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { type IngestHarness, multipart, startIngestHarness, TENANT_HEADER } from "../ingest/harness.ts";

/** Scenes of one or two objects, all of `color`, as 256 px JPEGs. */
async function colored(color: Color, count: number, seed: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let index = 0; index < count; index += 1) {
    const rng = createRng(deriveSeed(seed, color, index));
    const objects = Array.from({ length: 1 + (index % 2) }, () => ({ color }));
    const scene = sampleScene(rng, { objects });
    out.push(
      (
        await renderScene(scene, {
          size: 256,
          format: "jpeg",
          seed: deriveSeed(seed, "render", color, index),
        })
      ).data,
    );
  }
  return out;
}

const dataUrl = (bytes: Uint8Array) => `data:image/jpeg;base64,${Buffer.from(bytes).toString("base64")}`;

interface ClassifierBody {
  name: string;
  labels: Array<{ label: string; examples: number; itemIds: string[] }>;
  modelId: string;
  features: string;
  method: string;
  looAccuracy: number;
  threshold: number;
  applyOnIngest: boolean;
  metadataKey: string;
}

interface PredictionBody {
  labels: Array<{ label: string; probability: number }>;
  none?: true;
  threshold: number;
}

interface ErrorBody {
  error: { code: string; message: string };
}

describe("classifiers (real Lite and pack)", () => {
  let harness: IngestHarness;
  let red: Buffer[];
  let blue: Buffer[];
  let green: Buffer[];
  let redItemIds: string[] = [];

  const call = async (
    tenant: string,
    method: string,
    url: string,
    body?: unknown,
    app = harness.app,
  ): Promise<{ status: number; json: unknown }> => {
    const response = await app.request(url, {
      method,
      headers: {
        [TENANT_HEADER]: tenant,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, json: await response.json() };
  };

  const ingest = async (tenant: string, images: Buffer[]) => {
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      headers: { [TENANT_HEADER]: tenant },
      body: multipart({ files: images.map((bytes, index) => ({ name: `c${index}.jpg`, bytes })) }),
    });
    expect(response.status).toBe(200);
    const items = ((await response.json()) as { items: Array<{ id?: string; status: string }> }).items;
    expect(items.every((item) => item.status === "stored")).toBe(true);
    return items.map((item) => item.id as string);
  };

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "classifiers" });
    red = await colored("red", 8, 1);
    blue = await colored("blue", 8, 2);
    green = await colored("green", 4, 3);
    redItemIds = await ingest("acme", red.slice(0, 2));
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  it("creates a classifier from item ids and data URLs, lists it, and predicts held-out images", async () => {
    const created = await call("acme", "POST", "/v1/classifiers", {
      name: "tone",
      labels: [
        { label: "red", examples: [...redItemIds, ...red.slice(2, 4).map(dataUrl)] },
        { label: "blue", examples: blue.slice(0, 4).map(dataUrl) },
      ],
    });
    expect(created.status).toBe(201);
    const body = created.json as ClassifierBody;
    expect(body.name).toBe("tone");
    expect(body.modelId).toBe(harness.models.modelId);
    expect(["nearest-mean", "logistic"]).toContain(body.method);
    // The pack has a detection head, so the object summary is tried beside the embedding.
    expect(harness.models.detector).toBeDefined();
    expect(["embedding", "objects", "both"]).toContain(body.features);
    expect(body.looAccuracy).toBeGreaterThanOrEqual(0.75);
    expect(body.labels).toEqual([
      { label: "red", examples: 4, itemIds: redItemIds },
      { label: "blue", examples: 4, itemIds: [] },
    ]);
    expect(body.metadataKey).toBe("class_tone");

    const listed = await call("acme", "GET", "/v1/classifiers");
    expect((listed.json as { classifiers: ClassifierBody[] }).classifiers.map((entry) => entry.name)).toEqual(
      ["tone"],
    );

    let right = 0;
    for (const [label, images] of [
      ["red", red.slice(4)],
      ["blue", blue.slice(4)],
    ] as const) {
      for (const image of images) {
        const predicted = await call("acme", "POST", "/v1/classifiers/tone/predict", {
          image: dataUrl(image),
        });
        expect(predicted.status).toBe(200);
        const prediction = predicted.json as PredictionBody;
        expect(prediction.labels).toHaveLength(2);
        expect(prediction.labels[0]?.probability).toBeGreaterThanOrEqual(
          prediction.labels[1]?.probability ?? 1,
        );
        const sum = prediction.labels.reduce((total, entry) => total + entry.probability, 0);
        expect(sum).toBeCloseTo(1, 5);
        if (prediction.labels[0]?.label === label) right += 1;
      }
    }
    expect(right).toBeGreaterThanOrEqual(7);
  });

  it("predicts from a stored item's id and from a multipart upload", async () => {
    const byId = await call("acme", "POST", "/v1/classifiers/tone/predict", { image: redItemIds[0] });
    expect(byId.status).toBe(200);
    expect((byId.json as PredictionBody).labels[0]?.label).toBe("red");

    const form = new FormData();
    form.append("image", new File([new Uint8Array(blue[5] as Buffer)], "b.jpg", { type: "image/jpeg" }));
    const response = await harness.app.request("/v1/classifiers/tone/predict", {
      method: "POST",
      headers: { [TENANT_HEADER]: "acme" },
      body: form,
    });
    expect(response.status).toBe(200);
    expect(((await response.json()) as PredictionBody).labels[0]?.label).toBe("blue");
  });

  it("refuses a taken name with 409 unless replace is set", async () => {
    const labels = [
      { label: "red", examples: [dataUrl(red[2] as Buffer)] },
      { label: "blue", examples: [dataUrl(blue[2] as Buffer)] },
    ];
    const again = await call("acme", "POST", "/v1/classifiers", { name: "tone", labels });
    expect(again.status).toBe(409);
    expect((again.json as ErrorBody).error.code).toBe("conflict");
    expect((again.json as ErrorBody).error.message).toContain("replace");

    const other = await call("acme", "POST", "/v1/classifiers", { name: "scratch", labels });
    expect(other.status).toBe(201);
    const replaced = await call("acme", "POST", "/v1/classifiers", {
      name: "scratch",
      replace: true,
      labels: [...labels, { label: "green", examples: [dataUrl(green[0] as Buffer)] }],
    });
    expect(replaced.status).toBe(201);
    expect((replaced.json as ClassifierBody).labels.map((entry) => entry.label)).toEqual([
      "red",
      "blue",
      "green",
    ]);
    expect((await call("acme", "DELETE", "/v1/classifiers/scratch")).status).toBe(200);
    expect((await call("acme", "GET", "/v1/classifiers/scratch")).status).toBe(404);
  });

  it("adds examples, refusing a label it does not have unless asked to add it", async () => {
    const unknown = await call("acme", "POST", "/v1/classifiers/tone/examples", {
      labels: [{ label: "green", examples: [dataUrl(green[0] as Buffer)] }],
    });
    expect(unknown.status).toBe(400);
    expect((unknown.json as ErrorBody).error.message).toMatch(
      /Unknown label "green".*"red", "blue".*addLabels/,
    );

    const added = await call("acme", "POST", "/v1/classifiers/tone/examples", {
      labels: [{ label: "blue", examples: [dataUrl(blue[6] as Buffer)] }],
    });
    expect(added.status).toBe(200);
    expect((added.json as ClassifierBody).labels.find((entry) => entry.label === "blue")?.examples).toBe(5);
  });

  it("keeps classifiers per tenant: another tenant sees none, and cannot use this tenant's items as examples", async () => {
    expect((await call("globex", "GET", "/v1/classifiers/tone")).status).toBe(404);
    expect(
      ((await call("globex", "GET", "/v1/classifiers")).json as { classifiers: unknown[] }).classifiers,
    ).toEqual([]);
    const predicted = await call("globex", "POST", "/v1/classifiers/tone/predict", {
      image: dataUrl(red[0] as Buffer),
    });
    expect(predicted.status).toBe(404);

    const foreign = await call("globex", "POST", "/v1/classifiers", {
      name: "tone",
      labels: [
        { label: "red", examples: [redItemIds[0]] },
        { label: "blue", examples: [dataUrl(blue[0] as Buffer)] },
      ],
    });
    expect(foreign.status).toBe(404);
    const message = (foreign.json as ErrorBody).error.message;
    expect(message).toContain("labels[0].examples[0]");
    expect(message).toContain("no item with id");
    // The same answer as an id that exists nowhere: nothing tells the other tenant the item exists.
    const nowhere = await call("globex", "POST", "/v1/classifiers", {
      name: "tone",
      labels: [
        { label: "red", examples: ["img_00000000000000000000000000000000"] },
        { label: "blue", examples: [dataUrl(blue[0] as Buffer)] },
      ],
    });
    expect(nowhere.status).toBe(foreign.status);
    expect((nowhere.json as ErrorBody).error.code).toBe((foreign.json as ErrorBody).error.code);
  });

  it("refuses an unknown classifier, a label without examples, 10,000 labels and an image that fails to decode", async () => {
    const missing = await call("acme", "POST", "/v1/classifiers/nope/predict", {
      image: dataUrl(red[0] as Buffer),
    });
    expect(missing.status).toBe(404);
    expect((missing.json as ErrorBody).error.message).toContain("No classifier named");

    const empty = await call("acme", "POST", "/v1/classifiers", {
      name: "empty",
      labels: [
        { label: "red", examples: [dataUrl(red[0] as Buffer)] },
        { label: "blue", examples: [] },
      ],
    });
    expect(empty.status).toBe(400);
    expect((empty.json as ErrorBody).error.message).toContain('Label "blue" has no examples');

    const many = await call("acme", "POST", "/v1/classifiers", {
      name: "many",
      labels: Array.from({ length: 10_000 }, (_, index) => ({ label: `l${index}`, examples: ["aGVsbG8="] })),
    });
    expect(many.status).toBe(400);
    expect((many.json as ErrorBody).error.message).toContain("at most 1000 labels");

    const broken = await call("acme", "POST", "/v1/classifiers", {
      name: "broken",
      labels: [
        { label: "red", examples: [dataUrl(red[0] as Buffer)] },
        {
          label: "blue",
          examples: [dataUrl((blue[0] as Buffer).subarray(0, 300))],
        },
      ],
    });
    expect(broken.status).toBe(422);
    expect((broken.json as ErrorBody).error.message).toContain("labels[1].examples[0]");
    const badPredict = await call("acme", "POST", "/v1/classifiers/tone/predict", {
      image: Buffer.from("garbage bytes here").toString("base64"),
    });
    // Not an image format at all: refused before any decoder runs.
    expect(badPredict.status).toBe(415);
    expect((await call("acme", "GET", "/v1/classifiers")).json).toMatchObject({
      classifiers: [{ name: "tone" }],
    });
  });

  it("survives a restart of the services, and is fitted again when the model pack changes", async () => {
    const before = (
      await call("acme", "POST", "/v1/classifiers/tone/predict", { image: dataUrl(blue[7] as Buffer) })
    ).json as PredictionBody;
    const restarted = createApp(
      assembleServices({
        config: harness.config,
        logger: createLogger({ level: "silent" }),
        store: harness.store,
        models: harness.models,
        blobs: harness.blobs,
        jobs: harness.jobs,
        resolveTenant: (c) => c.req.header(TENANT_HEADER) ?? harness.config.defaultTenant,
      }),
    );
    const after = await call(
      "acme",
      "POST",
      "/v1/classifiers/tone/predict",
      { image: dataUrl(blue[7] as Buffer) },
      restarted,
    );
    expect(after.status).toBe(200);
    expect((after.json as PredictionBody).labels).toEqual(before.labels);

    // As if fitted under another pack: the stored file names another model and holds stale vectors.
    const store = createFileClassifierStore({ dir: path.join(harness.config.dataDir, "classifiers") });
    const stored = await store.get({ tenant: "acme", name: "tone" });
    expect(stored).toBeDefined();
    await store.put({
      ...(stored as NonNullable<typeof stored>),
      modelId: "another-pack@1",
      labels: (stored as NonNullable<typeof stored>).labels.map((entry) => ({
        ...entry,
        examples: entry.examples.map((example) => ({ ...example, vector: "AAAAAA==" })),
      })),
    });
    const service = new ClassifierService({
      store,
      search: harness.services.search,
      models: harness.models,
      media: harness.services.media,
    });
    const refitted = await service.get({ tenant: "acme", name: "tone" });
    expect(refitted.modelId).toBe(harness.models.modelId);
    expect(refitted.labels.map((entry) => entry.examples)).toEqual([4, 5]);
    expect((await store.get({ tenant: "acme", name: "tone" }))?.modelId).toBe(harness.models.modelId);
    const again = await service.predict({
      tenant: "acme",
      name: "tone",
      image: { bytes: blue[7] as Buffer },
    });
    expect(again.labels[0]?.label).toBe("blue");
  });

  it("writes the predicted label of new images into their metadata, findable with a filter", async () => {
    const created = await call("acme", "POST", "/v1/classifiers", {
      name: "auto",
      applyOnIngest: true,
      threshold: 0,
      labels: [
        { label: "red", examples: red.slice(0, 4).map(dataUrl) },
        { label: "blue", examples: blue.slice(0, 4).map(dataUrl) },
      ],
    });
    expect(created.status).toBe(201);
    expect((created.json as ClassifierBody).applyOnIngest).toBe(true);
    const [redId, blueId] = await ingest("acme", [red[7] as Buffer, blue[7] as Buffer]);
    const [record] = await harness.store.get({ kind: "image", tenant: "acme", ids: [redId as string] });
    expect(record?.metadata.class_auto).toBe("red");

    const search = await harness.app.request("/v1/search", {
      method: "POST",
      headers: { [TENANT_HEADER]: "acme", "content-type": "application/json" },
      body: JSON.stringify({
        text: "shapes",
        topK: 50,
        filter: [{ field: "metadata.class_auto", op: "eq", value: "blue" }],
      }),
    });
    expect(search.status).toBe(200);
    const ids = ((await search.json()) as { items: Array<{ id: string }> }).items.map((item) => item.id);
    expect(ids).toContain(blueId);
    expect(ids).not.toContain(redId);

    // Another tenant's ingest is not labelled by this tenant's classifier.
    const [foreignId] = await ingest("globex", [red[6] as Buffer]);
    const [foreign] = await harness.store.get({
      kind: "image",
      tenant: "globex",
      ids: [foreignId as string],
    });
    expect(foreign?.metadata.class_auto).toBeUndefined();
  });

  it("labels the segments of new videos when the classifier applies to video segments", async () => {
    const created = await call("acme", "POST", "/v1/classifiers", {
      name: "auto_video",
      applyOnIngest: true,
      kinds: ["video_segment"],
      threshold: 0,
      labels: [
        { label: "red", examples: red.slice(0, 4).map(dataUrl) },
        { label: "blue", examples: blue.slice(0, 4).map(dataUrl) },
      ],
    });
    expect(created.status).toBe(201);
    const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-classifiers-video-"));
    try {
      const labelled: Record<string, unknown> = {};
      for (const [color, frame] of [
        ["red", red[6]],
        ["blue", blue[6]],
      ] as const) {
        // A still of an unseen scene, held for 2 s: each segment's embedding and keyframe show it.
        const still = path.join(dir, `${color}.jpg`);
        await writeFile(still, frame as Buffer);
        const video = await makeTestVideo({
          outPath: path.join(dir, `${color}.mp4`),
          source: `movie=${still},loop=loop=15:size=1:start=0,setpts=N/(8*TB),format=yuv420p`,
        });
        const ingested = await harness.services.videos.ingest({
          tenant: "acme",
          bytes: await readFile(video),
          source: "upload",
        });
        const segments = await harness.store.get({
          kind: "video_segment",
          tenant: "acme",
          ids: ingested.segments.map((segment) => segment.id),
        });
        expect(segments.length).toBeGreaterThan(0);
        labelled[color] = [...new Set(segments.map((segment) => segment.metadata.class_auto_video))];
      }
      expect(labelled).toEqual({ red: ["red"], blue: ["blue"] });
      // A classifier of images only leaves segments alone.
      const [imageOnly] = await harness.store.get({
        kind: "video_segment",
        tenant: "acme",
        ids: [
          (
            await harness.services.videos.ingest({
              tenant: "acme",
              bytes: await readFile(path.join(dir, "red.mp4")),
              source: "upload",
            })
          ).segments[0]?.id as string,
        ],
      });
      expect(imageOnly?.metadata.class_auto).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("creates, lists and predicts from the command line through a server", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-classifiers-cli-"));
    try {
      const files: string[] = [];
      for (const [index, bytes] of [...red.slice(0, 3), ...blue.slice(0, 3), blue[7] as Buffer].entries()) {
        const file = path.join(dir, `e${index}.jpg`);
        await writeFile(file, bytes);
        files.push(file);
      }
      // As the tenant "acme", whose items the examples name.
      const fetch = (url: string, init: RequestInit) =>
        Promise.resolve(
          harness.app.request(url, {
            ...init,
            headers: { ...(init.headers as Record<string, string>), [TENANT_HEADER]: "acme" },
          }),
        );
      const target = { url: "http://127.0.0.1", fetch };
      const output: string[] = [];
      const write = (text: string) => output.push(text);
      const info = await createClassifierCommand({
        name: "cli_tone",
        labels: [
          `red=${files.slice(0, 2).join(",")},${redItemIds[0]}`,
          `blue=${files.slice(3, 6).join(",")}`,
        ],
        options: {},
        target,
        write,
      });
      expect(info.labels.map((entry) => [entry.label, entry.examples])).toEqual([
        ["red", 3],
        ["blue", 3],
      ]);
      expect(output.join("")).toMatch(/^Classifier cli_tone: 2 labels, 6 examples; /);

      const listed = await listClassifiersCommand({ options: {}, target, write });
      expect(listed.map((entry) => entry.name)).toContain("cli_tone");
      expect(output.join("")).toContain("LOO ACC");

      const prediction = await predictClassifierCommand({
        name: "cli_tone",
        image: files[6] as string,
        options: {},
        target,
        write,
      });
      expect(prediction.labels[0]?.label).toBe("blue");

      await expect(
        createClassifierCommand({ name: "cli_bad", labels: ["red"], options: {}, target, write }),
      ).rejects.toThrow(/not label=example,example/);
      await expect(
        predictClassifierCommand({ name: "nope", image: files[0] as string, options: {}, target, write }),
      ).rejects.toThrow(/Predicting failed \(404 not_found\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("keeps a tenant to 100 classifiers when two services (two replicas) create at once, letting go of the refused one's images", async () => {
    const store = createFileClassifierStore({ dir: path.join(harness.config.dataDir, "classifiers") });
    const createThrough = (name: string, index: number) =>
      call("capped", "POST", "/v1/classifiers", {
        name,
        labels: [
          { label: "red", examples: [dataUrl(red[index] as Buffer)] },
          { label: "blue", examples: [dataUrl(blue[index] as Buffer)] },
        ],
      });
    const first = await createThrough("first", 3);
    expect(first.status).toBe(201);
    // 98 more as stored copies (fitting 98 is not what is tested): 99 in all.
    const template = (await store.get({ tenant: "capped", name: "first" })) as StoredClassifier;
    for (let index = 0; index < 98; index += 1) {
      await store.put({ ...template, name: `filler_${index}` });
    }
    const replicas = [0, 1].map(
      () =>
        new ClassifierService({
          store: createFileClassifierStore({ dir: path.join(harness.config.dataDir, "classifiers") }),
          search: harness.services.search,
          models: harness.models,
          media: harness.services.media,
        }),
    );
    const examples = [4, 5].map((index) => [red[index] as Buffer, blue[index] as Buffer]);
    const outcomes = await Promise.allSettled(
      replicas.map((replica, index) =>
        replica.create({
          tenant: "capped",
          name: `late_${index}`,
          labels: [
            { label: "red", examples: [{ bytes: examples[index]?.[0] as Buffer }] },
            { label: "blue", examples: [{ bytes: examples[index]?.[1] as Buffer }] },
          ],
        }),
      ),
    );
    const created = outcomes.findIndex((outcome) => outcome.status === "fulfilled");
    const refused = outcomes.find((outcome) => outcome.status === "rejected");
    expect(created).toBeGreaterThanOrEqual(0);
    expect((refused as PromiseRejectedResult | undefined)?.reason).toMatchObject({
      code: "invalid_request",
      message: "The tenant has 100 classifiers, the most allowed (100); delete one first.",
    });
    expect(await store.list({ tenant: "capped" })).toHaveLength(100);
    // The created one holds its images; the refused one holds none.
    for (const [index, images] of examples.entries()) {
      for (const bytes of images) {
        const owners = await harness.blobs.references(createHash("sha256").update(bytes).digest("hex"));
        if (index === created) expect(owners).toContain(`capped/classifier:late_${index}`);
        else expect(owners).not.toContain(`capped/classifier:late_${index}`);
      }
    }

    const past = await createThrough("one_more", 6);
    expect(past.status).toBe(400);
    expect(past.json).toMatchObject({
      error: {
        code: "invalid_request",
        message: "The tenant has 100 classifiers, the most allowed (100); delete one first.",
      },
    });
  });
});
