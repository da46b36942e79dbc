/**
 * Rendered text for OCR tests and the OCR bench: lines of text drawn with sharp (Pango, the installed DejaVu
 * and Noto CJK fonts) on a light or dark background, with every line's text and box as ground truth, and
 * the character error rate a reading is scored by.
 */
import sharp, { type OverlayOptions } from "sharp";

/** A line to draw. */
export interface TextLineSpec {
  text: string;
  /** Font size in pixels. */
  size: number;
  /** Left and top of the line's box. */
  x: number;
  y: number;
  /** Font family; DejaVu Sans by default, Noto Sans CJK SC for lines with CJK characters. */
  font?: string;
  /** Text colour (CSS hex); the theme's foreground by default. */
  color?: string;
}

/** A drawn line: its text and the box its ink occupies. */
export interface RenderedLine {
  text: string;
  box: [number, number, number, number];
}

/** Light (dark grey on near white) or dark (light grey on near black) theme, like a UI. */
export type TextTheme = "light" | "dark";

const themes: Record<TextTheme, { background: string; foreground: string }> = {
  light: { background: "#f7f7f5", foreground: "#202124" },
  dark: { background: "#1e1f22", foreground: "#e3e3e3" },
};

function escapeMarkup(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** Whether a text has Chinese, Japanese or Korean characters. */
export function hasCjk(text: string): boolean {
  return /[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]/u.test(text);
}

/** Renders one line as an RGBA image of its own size. */
export async function renderLine({
  text,
  size,
  font,
  color,
}: {
  text: string;
  size: number;
  font?: string;
  color: string;
}): Promise<{ png: Buffer; width: number; height: number }> {
  const family = font ?? (hasCjk(text) ? "Noto Sans CJK SC" : "DejaVu Sans");
  const { data, info } = await sharp({
    text: {
      text: `<span foreground="${color}">${escapeMarkup(text)}</span>`,
      font: `${family} ${size}px`,
      dpi: 72,
      rgba: true,
    },
  })
    .png()
    .toBuffer({ resolveWithObject: true });
  return { png: data, width: info.width, height: info.height };
}

/**
 * Draws lines on a background and returns the encoded image with each line's text and box. Lines that
 * would fall outside the image are left out of the picture and of the truth.
 */
export async function renderTextImage({
  width,
  height,
  lines,
  theme = "light",
  format = "png",
}: {
  width: number;
  height: number;
  lines: readonly TextLineSpec[];
  theme?: TextTheme;
  format?: "png" | "jpeg";
}): Promise<{ bytes: Buffer; lines: RenderedLine[] }> {
  const { background, foreground } = themes[theme];
  const composites: OverlayOptions[] = [];
  const truth: RenderedLine[] = [];
  for (const line of lines) {
    const rendered = await renderLine({
      text: line.text,
      size: line.size,
      color: line.color ?? foreground,
      ...(line.font === undefined ? {} : { font: line.font }),
    });
    if (line.x + rendered.width > width || line.y + rendered.height > height) continue;
    composites.push({ input: rendered.png, left: line.x, top: line.y });
    truth.push({ text: line.text, box: [line.x, line.y, rendered.width, rendered.height] });
  }
  let image = sharp({ create: { width, height, channels: 3, background } }).composite(composites);
  image = format === "png" ? image.png() : image.jpeg({ quality: 90 });
  return { bytes: await image.toBuffer(), lines: truth };
}

/**
 * Lays out lines top to bottom at `x`, `lineGap` × size apart, starting at `top`.
 */
export function stackLines({
  texts,
  size,
  x = 16,
  top = 16,
  lineGap = 2,
  font,
}: {
  texts: readonly string[];
  size: number;
  x?: number;
  top?: number;
  lineGap?: number;
  font?: string;
}): TextLineSpec[] {
  return texts.map((text, index) => ({
    text,
    size,
    x,
    y: Math.round(top + index * size * lineGap),
    ...(font === undefined ? {} : { font }),
  }));
}

/** Edit distance between two strings, by Unicode code point. */
export function editDistance(a: string, b: string): number {
  const left = [...a];
  const right = [...b];
  let previous = Array.from({ length: right.length + 1 }, (_, index) => index);
  for (let i = 1; i <= left.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= right.length; j += 1) {
      const substitution = (previous[j - 1] ?? 0) + (left[i - 1] === right[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[right.length] ?? 0;
}

/**
 * Character error rate of a reading against the truth: edit distance over the truth's length, lines
 * joined with newlines, runs of whitespace counted as one space.
 */
export function characterErrorRate({ truth, read }: { truth: string; read: string }): number {
  const normalize = (text: string): string => text.replace(/\s+/g, " ").trim();
  const expected = normalize(truth);
  return editDistance(expected, normalize(read)) / Math.max(1, [...expected].length);
}

/** Intersection over union of two `[x, y, width, height]` boxes. */
export function boxIou(
  a: readonly [number, number, number, number],
  b: readonly [number, number, number, number],
): number {
  const width = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const intersection = width * height;
  return intersection / (a[2] * a[3] + b[2] * b[3] - intersection);
}

/** A small screenshot of a service error: "Error <code>" over "Service <n> stopped" (480 × 160 PNG). */
export async function renderErrorScreen({
  code,
  service,
}: {
  code: string;
  service: number;
}): Promise<Buffer> {
  const { bytes } = await renderTextImage({
    width: 480,
    height: 160,
    lines: [
      { text: `Error ${code}`, size: 22, x: 20, y: 20 },
      { text: `Service ${service} stopped`, size: 16, x: 20, y: 80 },
    ],
  });
  return bytes;
}
