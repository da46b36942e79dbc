/**
 * COCO and Flickr30k captions in Karpathy's split format (`dataset_coco.json`, `dataset_flickr30k.json`)
 * as text→image retrieval suites: the images of the chosen split are the corpus (ingested without their
 * captions, which are the queries), and every caption is a case whose one relevant image is its own.
 *
 * ```json
 * {"dataset":"coco","images":[{"filepath":"val2014","filename":"COCO_val2014_000000391895.jpg","imgid":0,
 *   "split":"test","cocoid":391895,"sentids":[0,1],"sentences":[{"raw":"A man riding a bike.","sentid":0}]}]}
 * ```
 */
import { basename, extname, resolve } from "node:path";
import { z } from "zod";
import type { CorpusImage, RetrievalCase, Suite } from "../suite.ts";
import { failAt, type Place, parseJsonFile, referencedFiles } from "./files.ts";

const sentenceSchema = z.object({
  raw: z.string().trim().min(1, { error: "must not be empty" }),
  sentid: z.number().int().optional(),
});

/** The fields of a Karpathy split file that the loader reads (others are ignored). */
export const karpathySchema = z.object({
  dataset: z.string().optional(),
  images: z.array(
    z.object({
      filename: z.string().min(1),
      filepath: z.string().min(1).optional(),
      split: z.string().min(1),
      imgid: z.number().int().optional(),
      cocoid: z.number().int().optional(),
      sentences: z.array(sentenceSchema),
    }),
  ),
});

/** Options of {@link loadKarpathySuite}. */
export interface LoadKarpathySuiteOptions {
  /** The Karpathy JSON file. */
  file: string;
  /** The folder that `filepath/filename` is relative to; defaults to the JSON file's folder. */
  imagesDir?: string;
  /** Splits to load (default `["test"]`); Karpathy's are `train`, `restval`, `val` and `test`. */
  splits?: readonly string[];
  /** Keep only the first N images of the splits (and their captions). */
  maxImages?: number;
  /** Suite name; defaults to `<dataset>-<splits>`. */
  name?: string;
  /** Check that every image file exists (default true). */
  checkFiles?: boolean;
}

/**
 * Loads a Karpathy split file as a text→image retrieval suite. Image ids are `filepath/filename` (or
 * `filename`); case ids are `s<sentid>` (or `<image index>-<sentence index>` when sentids are missing).
 *
 * @throws ValidationError for a missing or malformed file (naming the field, e.g.
 * `images[3].sentences[0].raw`), a split with no images (naming the splits present), a path that leaves
 * `imagesDir`, or a missing image file.
 */
export async function loadKarpathySuite({
  file,
  imagesDir,
  splits = ["test"],
  maxImages,
  name,
  checkFiles = true,
}: LoadKarpathySuiteOptions): Promise<Suite> {
  const source = resolve(file);
  const root = resolve(imagesDir ?? resolve(source, ".."));
  const place: Place = { file: source };
  const data = await parseJsonFile({ file: source, what: "Karpathy caption file", schema: karpathySchema });
  if (maxImages !== undefined && (!Number.isInteger(maxImages) || maxImages < 1)) {
    failAt(place, `maxImages must be a positive integer, got ${maxImages}.`, { maxImages });
  }
  const wanted = new Set(splits);
  const chosen = data.images
    .map((image, index) => ({ image, index }))
    .filter(({ image }) => wanted.has(image.split))
    .slice(0, maxImages);
  if (chosen.length === 0) {
    const present = [...new Set(data.images.map((image) => image.split))].sort();
    failAt(
      place,
      `no images in split ${[...wanted].join(", ")}; the file has ${present.length === 0 ? "no images" : `splits ${present.join(", ")}`}.`,
      { splits: [...wanted], present },
    );
  }

  const images: CorpusImage[] = [];
  const cases: RetrievalCase[] = [];
  const files = referencedFiles({ root });
  const imageIds = new Set<string>();
  const caseIds = new Set<string>();
  for (const { image, index } of chosen) {
    const field = `images[${index}]`;
    const relativePath =
      image.filepath === undefined ? image.filename : `${image.filepath}/${image.filename}`;
    const path = files.add({ path: relativePath, place, field: `${field}.filename` });
    if (imageIds.has(relativePath)) {
      failAt(
        place,
        `field "${field}.filename": ${relativePath} is listed twice; each image must appear once.`,
        {
          path: relativePath,
        },
      );
    }
    imageIds.add(relativePath);
    images.push({
      id: relativePath,
      path,
      metadata: {
        split: image.split,
        ...(data.dataset === undefined ? {} : { dataset: data.dataset }),
        ...(image.cocoid === undefined ? {} : { cocoid: image.cocoid }),
        ...(image.imgid === undefined ? {} : { imgid: image.imgid }),
      },
    });
    image.sentences.forEach((sentence, position) => {
      const id = sentence.sentid === undefined ? `${index}-${position}` : `s${sentence.sentid}`;
      if (caseIds.has(id)) {
        failAt(
          place,
          `field "${field}.sentences[${position}].sentid": sentence id ${id} is used twice; sentids must be unique.`,
          {
            id,
          },
        );
      }
      caseIds.add(id);
      cases.push({
        kind: "retrieval",
        id,
        task: "text-to-image",
        tags: [image.split],
        query: { text: sentence.raw },
        relevant: [relativePath],
        segments: [],
      });
    });
  }

  if (checkFiles) await files.checkExist();
  return {
    name: name ?? `${data.dataset ?? basename(source, extname(source))}-${[...wanted].join("+")}`,
    format: "karpathy",
    source,
    corpus: { images, videos: [], triples: [] },
    cases,
  };
}
