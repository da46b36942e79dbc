/**
 * The OCR backfill job resumed after a restart, over the services Loupe builds (real Milvus Lite under a
 * data dir, the real pack and PP-OCRv4): images ingested with OCR off, a backfill stopped part-way by
 * closing the services, the services started again, and a second run reads only what was left.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config.ts";
import type { JobSnapshot } from "../../src/ingest/jobs.ts";
import { OCR_JOB_KIND } from "../../src/ingest/ocr-backfill.ts";
import { createLogger } from "../../src/logger.ts";
import { readOcrMetadata } from "../../src/media/ocr-lines.ts";
import { createLoupeServices, type OpenLoupeServices } from "../../src/services.ts";
import type { StoredImage } from "../../src/store/index.ts";
import { renderErrorScreen } from "../helpers/text-images.ts";
import { ROOT } from "./harness.ts";

const TENANT = "backfill";
const CODES = ["E1001", "E1002", "E1003", "E1004", "E1005", "E1006"];

describe("OCR backfill job (real Lite, pack and PP-OCRv4)", () => {
  let dataDir: string;
  let services: OpenLoupeServices | undefined;
  const logger = createLogger({ level: "silent" });

  const open = (ocr: "auto" | "off") =>
    createLoupeServices({
      config: parseConfig({
        env: { LOUPE_DATA_DIR: dataDir, LOUPE_OCR: ocr, LOUPE_BLOB_GC_AT_START: "off" },
        cwd: ROOT,
      }),
      logger,
    });

  const images = async (open: OpenLoupeServices): Promise<StoredImage[]> =>
    (await open.store.list({ kind: "image", tenant: TENANT, limit: 100 })).rows;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-ocr-backfill-"));
  });

  afterAll(async () => {
    await services?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("continues after a restart where the stopped run left off, ids unchanged", async () => {
    // Ingest with OCR off: nothing is read.
    services = await open("off");
    expect(services.ocrBackfill).toBeUndefined();
    const screenshots = await Promise.all(
      CODES.map(async (code, index) => ({
        index,
        input: {
          source: {
            type: "bytes" as const,
            filename: `${code}.png`,
            bytes: await renderErrorScreen({ code, service: index + 1 }),
          },
        },
      })),
    );
    await services.images.ingest({ tenant: TENANT, items: screenshots, report: () => undefined });
    const before = await images(services);
    expect(before).toHaveLength(CODES.length);
    expect(
      before.every((image) => image.ocrText === "" && readOcrMetadata(image.metadata) === undefined),
    ).toBe(true);
    const ids = before.map((image) => image.id).sort();
    await services.close();

    // Start the backfill and stop the services (a shutdown) once two items are read.
    services = await open("auto");
    const first = services;
    const backfill = first.ocrBackfill;
    expect(backfill).toBeDefined();
    const job = first.jobs.create({
      tenant: TENANT,
      kind: OCR_JOB_KIND,
      items: [],
      run: backfill?.runner({ tenant: TENANT }) ?? (async () => undefined),
    });
    let closing: Promise<void> | undefined;
    for await (const event of first.jobs.events({ id: job.id, tenant: TENANT })) {
      if (event.type === "progress" && event.data.counts.done >= 2 && closing === undefined) {
        closing = first.close();
      }
      if (event.type === "done" || event.type === "error") break;
    }
    const stopped: JobSnapshot = first.jobs.get({ id: job.id, tenant: TENANT });
    await closing;
    expect(stopped.status).toBe("failed");
    expect(stopped.error?.code).toBe("shutting_down");
    const readFirst = stopped.counts.done;
    expect(readFirst).toBeGreaterThanOrEqual(2);
    expect(readFirst).toBeLessThan(CODES.length);

    // Start again: the second run reads only the rest; the ones read are skipped by their marker.
    services = await open("auto");
    const afterRestart = await images(services);
    expect(afterRestart.filter((image) => readOcrMetadata(image.metadata) !== undefined)).toHaveLength(
      readFirst,
    );
    const second = services.jobs.create({
      tenant: TENANT,
      kind: OCR_JOB_KIND,
      items: [],
      run: services.ocrBackfill?.runner({ tenant: TENANT }) ?? (async () => undefined),
    });
    const finished = await services.jobs.wait({ id: second.id, tenant: TENANT });
    expect(finished.status).toBe("done");
    expect(finished.counts).toEqual({
      total: CODES.length,
      pending: 0,
      done: CODES.length - readFirst,
      skipped: readFirst,
      failed: 0,
    });

    const after = await images(services);
    expect(after.map((image) => image.id).sort()).toEqual(ids);
    for (const image of after) {
      const code = CODES[Number(String(image.metadata.filename).slice(3, 5)) - 1];
      expect(readOcrMetadata(image.metadata)?.engine).toBe("pp-ocrv4");
      expect(image.ocrText).toContain(code);
      // Other metadata untouched.
      expect(image.metadata.filename).toMatch(/^E10\d\d\.png$/);
      expect(image.metadata.thumbnailRef).toMatch(/^blob:/);
    }
    // And the text is searchable now.
    const { items } = await services.search.search({
      tenant: TENANT,
      text: "E1004",
      mode: "text",
      kinds: ["image"],
    });
    expect(items[0]?.metadata.filename).toBe("E1004.png");

    // A third run finds nothing to do.
    const third = services.jobs.create({
      tenant: TENANT,
      kind: OCR_JOB_KIND,
      items: [],
      run: services.ocrBackfill?.runner({ tenant: TENANT }) ?? (async () => undefined),
    });
    expect((await services.jobs.wait({ id: third.id, tenant: TENANT })).counts).toEqual({
      total: CODES.length,
      pending: 0,
      done: 0,
      skipped: CODES.length,
      failed: 0,
    });
  }, 240_000);
});
