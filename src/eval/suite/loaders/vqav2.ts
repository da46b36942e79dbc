/**
 * VQAv2 (and VQA v1) as a VQA suite: the official questions file and annotations file give one case per
 * question with its 10 human answers, scored with the official accuracy (`vqaAccuracy`). The images the
 * questions ask about are the corpus.
 *
 * ```json
 * questions:   {"data_subtype":"val2014","questions":[{"image_id":42,"question":"What color?","question_id":420}]}
 * annotations: {"annotations":[{"question_id":420,"image_id":42,"question_type":"what color","answer_type":"other",
 *               "multiple_choice_answer":"red","answers":[{"answer":"red","answer_id":1}, …]}]}
 * ```
 */
import { basename, extname, resolve } from "node:path";
import { z } from "zod";
import type { CorpusImage, Suite, VqaCase } from "../suite.ts";
import { failAt, type Place, parseJsonFile, referencedFiles } from "./files.ts";

/** The fields of a questions file that the loader reads. */
export const vqaQuestionsSchema = z.object({
  data_subtype: z.string().min(1).optional(),
  questions: z.array(
    z.object({
      image_id: z.number().int().min(0),
      question: z.string().trim().min(1, { error: "must not be empty" }),
      question_id: z.number().int().min(0),
    }),
  ),
});

/** The fields of an annotations file that the loader reads. */
export const vqaAnnotationsSchema = z.object({
  annotations: z.array(
    z.object({
      question_id: z.number().int().min(0),
      image_id: z.number().int().min(0),
      question_type: z.string().optional(),
      answer_type: z.string().optional(),
      answers: z.array(z.object({ answer: z.string() })).min(1, { error: "must hold at least one answer" }),
    }),
  ),
});

/** The COCO file name of an image: `COCO_<subtype>_<12-digit id>.jpg`. */
export function cocoImageFile({ imageId, subtype }: { imageId: number; subtype: string }): string {
  return `COCO_${subtype}_${String(imageId).padStart(12, "0")}.jpg`;
}

/** Options of {@link loadVqaV2Suite}. */
export interface LoadVqaV2SuiteOptions {
  questionsFile: string;
  annotationsFile: string;
  /** The folder of the images; defaults to the questions file's folder. */
  imagesDir?: string;
  /** Image file name (relative to `imagesDir`) of an image id; defaults to {@link cocoImageFile}. */
  imageFile?: (options: { imageId: number; subtype: string }) => string;
  /** Overrides the questions file's `data_subtype` (e.g. `val2014`). */
  subtype?: string;
  /** Keep only the first N questions. */
  maxQuestions?: number;
  name?: string;
  /** Check that every image file exists (default true). */
  checkFiles?: boolean;
}

/**
 * Loads VQAv2 questions and annotations as VQA cases (`q<question_id>`, answers as the humans gave them,
 * tagged with answer type and question type) over the images they ask about (`coco-<image_id>`).
 *
 * @throws ValidationError for missing or malformed files (naming the file and field), a question without
 * an annotation or whose annotation names another image, repeated question ids, no subtype to name
 * image files by, or a missing image file.
 */
export async function loadVqaV2Suite({
  questionsFile,
  annotationsFile,
  imagesDir,
  imageFile = cocoImageFile,
  subtype,
  maxQuestions,
  name,
  checkFiles = true,
}: LoadVqaV2SuiteOptions): Promise<Suite> {
  const questionsPath = resolve(questionsFile);
  const annotationsPath = resolve(annotationsFile);
  const root = resolve(imagesDir ?? resolve(questionsPath, ".."));
  const questionsPlace: Place = { file: questionsPath };
  const annotationsPlace: Place = { file: annotationsPath };
  const questions = await parseJsonFile({
    file: questionsPath,
    what: "VQA questions file",
    schema: vqaQuestionsSchema,
  });
  const annotations = await parseJsonFile({
    file: annotationsPath,
    what: "VQA annotations file",
    schema: vqaAnnotationsSchema,
  });
  if (maxQuestions !== undefined && (!Number.isInteger(maxQuestions) || maxQuestions < 1)) {
    failAt(questionsPlace, `maxQuestions must be a positive integer, got ${maxQuestions}.`, { maxQuestions });
  }
  const imageSubtype = subtype ?? questions.data_subtype;
  if (imageSubtype === undefined && imageFile === cocoImageFile) {
    failAt(
      questionsPlace,
      'field "data_subtype" is missing, so image file names cannot be derived; pass subtype (e.g. "val2014") or imageFile.',
    );
  }

  const byQuestion = new Map<
    number,
    { annotation: (typeof annotations.annotations)[number]; index: number }
  >();
  annotations.annotations.forEach((annotation, index) => {
    if (byQuestion.has(annotation.question_id)) {
      failAt(
        annotationsPlace,
        `field "annotations[${index}].question_id": question ${annotation.question_id} is annotated twice; each question must have one annotation.`,
        { questionId: annotation.question_id },
      );
    }
    byQuestion.set(annotation.question_id, { annotation, index });
  });

  const images = new Map<number, CorpusImage>();
  const files = referencedFiles({ root });
  const cases: VqaCase[] = [];
  const seen = new Set<number>();
  questions.questions.slice(0, maxQuestions).forEach((question, index) => {
    const field = `questions[${index}]`;
    if (seen.has(question.question_id)) {
      failAt(
        questionsPlace,
        `field "${field}.question_id": question ${question.question_id} is listed twice.`,
        {
          questionId: question.question_id,
        },
      );
    }
    seen.add(question.question_id);
    const found = byQuestion.get(question.question_id);
    if (found === undefined) {
      failAt(
        annotationsPlace,
        `question ${question.question_id} (${questionsPath} ${field}) has no annotation; give the annotations file of the same split.`,
        { questionId: question.question_id },
      );
    }
    if (found.annotation.image_id !== question.image_id) {
      failAt(
        annotationsPlace,
        `field "annotations[${found.index}].image_id": question ${question.question_id} is about image ${question.image_id} in the questions file but ${found.annotation.image_id} here; the files do not belong together.`,
        { questionId: question.question_id },
      );
    }
    const imageId = `coco-${question.image_id}`;
    if (!images.has(question.image_id)) {
      const relativePath = imageFile({ imageId: question.image_id, subtype: imageSubtype ?? "" });
      const path = files.add({ path: relativePath, place: questionsPlace, field: `${field}.image_id` });
      images.set(question.image_id, {
        id: imageId,
        path,
        metadata: {
          imageId: question.image_id,
          ...(imageSubtype === undefined ? {} : { subtype: imageSubtype }),
        },
      });
    }
    const { annotation } = found;
    cases.push({
      kind: "vqa",
      id: `q${question.question_id}`,
      tags: [annotation.answer_type, annotation.question_type].filter((tag) => tag !== undefined),
      image: { kind: "corpus", id: imageId },
      question: question.question,
      answers: annotation.answers.map((answer) => answer.answer),
      ...(annotation.question_type === undefined ? {} : { questionType: annotation.question_type }),
      ...(annotation.answer_type === undefined ? {} : { answerType: annotation.answer_type }),
    });
  });

  if (checkFiles) await files.checkExist();
  return {
    name: name ?? `vqav2-${imageSubtype ?? basename(questionsPath, extname(questionsPath))}`,
    format: "vqav2",
    source: questionsPath,
    corpus: { images: [...images.values()], videos: [], triples: [] },
    cases,
  };
}
