/**
 * OCR quality against ground-truth lines: the character error rate (CER) of what an engine read, by
 * script and text size, and the text containment a chat answer about a screenshot is scored with.
 *
 * How lines are matched: a ground-truth line and a read line belong together when their boxes overlap by
 * at least half of the smaller box (boxes of the reading are first scaled to the ground truth's image
 * size). Lines linked that way, directly or through each other, form a group: an engine that reads two
 * cells of a table row as one line, or one long line as two, is compared group against group, each side's
 * texts joined in reading order (top to bottom, then left to right). A ground-truth line that nothing
 * overlaps is read as empty (all its characters are deletions); a read line that overlaps no ground
 * truth is spurious (its characters count as insertions in the overall CER, not in any bucket).
 *
 * Texts are compared after Unicode NFKC (full-width punctuation becomes ASCII) with all whitespace
 * removed, case kept: CER = (substitutions + deletions + insertions) / reference characters.
 */

/** `[x, y, width, height]`. */
export type Box = readonly [number, number, number, number];

/** A line of ground truth. */
export interface TruthLine {
  text: string;
  box: Box;
  script: "latin" | "cjk";
  fontPx: number;
}

/** A line an engine read. */
export interface ReadLine {
  text: string;
  box: Box;
}

/** Buckets CER is broken down by. */
export const CER_BUCKETS = ["latin12", "latinSmall", "cjk"] as const;
export type CerBucket = (typeof CER_BUCKETS)[number];

/** The bucket of a ground-truth line: Chinese, English of 12 px and more, or smaller English. */
export function cerBucketOf(line: Pick<TruthLine, "script" | "fontPx">): CerBucket {
  if (line.script === "cjk") return "cjk";
  return line.fontPx >= 12 ? "latin12" : "latinSmall";
}

/** Edits and reference characters, summed. */
export interface EditCount {
  edits: number;
  chars: number;
}

/** What {@link scoreOcrLines} found on one image. */
export interface OcrScore {
  /** All buckets, plus spurious lines' characters as insertions. */
  overall: EditCount;
  byBucket: Record<CerBucket, EditCount>;
  /** Characters of read lines that overlap no ground truth. */
  spuriousChars: number;
  /** Ground-truth lines some read line overlaps. */
  linesFound: number;
  lines: number;
  /** The worst groups, for reports: ground truth, what was read, edits. */
  misses: Array<{ truth: string; read: string; edits: number }>;
}

/** Text as compared: NFKC, no whitespace. */
export function normalizeOcrText(text: string): string {
  return text.normalize("NFKC").replace(/\s+/gu, "");
}

/** Levenshtein distance over code points. */
export function editDistance(a: string, b: string): number {
  const left = [...a];
  const right = [...b];
  if (left.length === 0) return right.length;
  if (right.length === 0) return left.length;
  let previous = Array.from({ length: right.length + 1 }, (_, index) => index);
  for (let i = 1; i <= left.length; i++) {
    const current = [i];
    for (let j = 1; j <= right.length; j++) {
      const cost = left[i - 1] === right[j - 1] ? 0 : 1;
      current.push(
        Math.min(
          (previous[j] as number) + 1,
          (current[j - 1] as number) + 1,
          (previous[j - 1] as number) + cost,
        ),
      );
    }
    previous = current;
  }
  return previous[right.length] as number;
}

/** The character error rate of one reading of one line. */
export function characterErrorRate({
  reference,
  hypothesis,
}: {
  reference: string;
  hypothesis: string;
}): number {
  const ref = normalizeOcrText(reference);
  const hyp = normalizeOcrText(hypothesis);
  if (ref.length === 0) return hyp.length === 0 ? 0 : 1;
  return editDistance(ref, hyp) / [...ref].length;
}

function overlapShare(a: Box, b: Box): number {
  const width = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const smaller = Math.min(a[2] * a[3], b[2] * b[3]);
  return smaller <= 0 ? 0 : (width * height) / smaller;
}

const readingOrder = <Line extends { box: Box }>(lines: readonly Line[]): Line[] =>
  [...lines].sort((a, b) => {
    const aCenter = a.box[1] + a.box[3] / 2;
    const bCenter = b.box[1] + b.box[3] / 2;
    // Same row when the centers are within half the smaller height.
    if (Math.abs(aCenter - bCenter) < Math.min(a.box[3], b.box[3]) / 2) return a.box[0] - b.box[0];
    return aCenter - bCenter;
  });

/**
 * Scores what an engine read on one image against its ground truth (see the module comment).
 *
 * @param scale - factors from the reading's coordinates to the ground truth's (`truthWidth / readWidth`)
 */
export function scoreOcrLines({
  truth,
  read,
  scale = [1, 1],
}: {
  truth: readonly TruthLine[];
  read: readonly ReadLine[];
  scale?: readonly [number, number];
}): OcrScore {
  const scaled: ReadLine[] = read.map((line) => ({
    text: line.text,
    box: [line.box[0] * scale[0], line.box[1] * scale[1], line.box[2] * scale[0], line.box[3] * scale[1]],
  }));
  // Union-find over truth lines (0..T-1) and read lines (T..T+R-1).
  const parent = Array.from({ length: truth.length + scaled.length }, (_, index) => index);
  const find = (node: number): number => {
    let root = node;
    while (parent[root] !== root) root = parent[root] as number;
    parent[node] = root;
    return root;
  };
  const linked = new Set<number>();
  truth.forEach((line, t) => {
    scaled.forEach((other, r) => {
      if (overlapShare(line.box, other.box) >= 0.5) {
        parent[find(t)] = find(truth.length + r);
        linked.add(t);
        linked.add(truth.length + r);
      }
    });
  });
  const groups = new Map<number, { truth: TruthLine[]; read: ReadLine[] }>();
  const groupOf = (node: number) => {
    const root = find(node);
    let group = groups.get(root);
    if (group === undefined) {
      group = { truth: [], read: [] };
      groups.set(root, group);
    }
    return group;
  };
  truth.forEach((line, t) => {
    groupOf(t).truth.push(line);
  });
  let spuriousChars = 0;
  scaled.forEach((line, r) => {
    if (linked.has(truth.length + r)) groupOf(truth.length + r).read.push(line);
    else spuriousChars += [...normalizeOcrText(line.text)].length;
  });
  const byBucket = Object.fromEntries(
    CER_BUCKETS.map((bucket) => [bucket, { edits: 0, chars: 0 }]),
  ) as Record<CerBucket, EditCount>;
  const overall: EditCount = { edits: spuriousChars, chars: 0 };
  const misses: OcrScore["misses"] = [];
  for (const group of groups.values()) {
    if (group.truth.length === 0) continue;
    const reference = readingOrder(group.truth)
      .map((line) => normalizeOcrText(line.text))
      .join("");
    const hypothesis = readingOrder(group.read)
      .map((line) => normalizeOcrText(line.text))
      .join("");
    const edits = editDistance(reference, hypothesis);
    const chars = [...reference].length;
    overall.edits += edits;
    overall.chars += chars;
    // A group's edits are shared among its truth lines by their length.
    for (const line of group.truth) {
      const share = chars === 0 ? 0 : [...normalizeOcrText(line.text)].length / chars;
      const bucket = byBucket[cerBucketOf(line)];
      bucket.edits += edits * share;
      bucket.chars += [...normalizeOcrText(line.text)].length;
    }
    if (edits > 0) {
      misses.push({
        truth: group.truth.map((line) => line.text).join(" | "),
        read: group.read.map((line) => line.text).join(" | "),
        edits,
      });
    }
  }
  misses.sort((a, b) => b.edits - a.edits);
  return {
    overall,
    byBucket,
    spuriousChars,
    linesFound: truth.filter((_, t) => linked.has(t)).length,
    lines: truth.length,
    misses,
  };
}

function normalizeAnswer(text: string): string {
  return text
    .normalize("NFKC")
    .replace(/\[[^\]\s]{1,80}\]/gu, " ")
    .replace(/[*`"“”'‘’]/gu, " ")
    .toLowerCase()
    .replace(/\s+/gu, " ")
    .trim();
}

/** Letters and digits each continue a run of their own kind: "5432" is inside "15432", not "5432mb". */
function sameKind(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  const kind = (char: string) => (/[0-9]/u.test(char) ? "digit" : /[a-z_]/u.test(char) ? "latin" : "other");
  return kind(a) !== "other" && kind(a) === kind(b);
}

/**
 * True when `expected` appears in `answer`, compared without whitespace (readers drop and add spaces,
 * around punctuation, numbers and Chinese especially), case and width aside, citation markers and
 * markdown marks removed; the match must not continue a run of Latin letters or of digits on either
 * side ("5432" is not found in "15432" nor "E1234" in "E12345", but "512" is in "512MB" and in "分配512";
 * a space in the answer ends a run). For text read off screenshots, where VQA's punctuation rules would
 * split codes such as `ERR_CONN_REFUSED` or `ORA-12541`.
 */
export function containsText({ answer, expected }: { answer: string; expected: string }): boolean {
  const spaced = normalizeAnswer(answer);
  // The answer without spaces, and where each of its characters sits in the spaced text.
  const positions: number[] = [];
  let haystack = "";
  for (let index = 0; index < spaced.length; index++) {
    if (spaced[index] === " ") continue;
    positions.push(index);
    haystack += spaced[index];
  }
  const needle = normalizeAnswer(expected)
    .replace(/\s+/gu, "")
    .replace(/[.。!！?？]+$/u, "");
  if (needle.length === 0) return false;
  let from = 0;
  for (;;) {
    const index = haystack.indexOf(needle, from);
    if (index < 0) return false;
    const start = positions[index] as number;
    const end = positions[index + needle.length - 1] as number;
    if (!sameKind(spaced[start - 1], spaced[start]) && !sameKind(spaced[end + 1], spaced[end])) return true;
    from = index + 1;
  }
}
