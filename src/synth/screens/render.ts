/**
 * Lays out and renders a screen's content: panels and rules as SVG rasterized by sharp, every line of
 * text rendered by sharp's text input (Pango, fonts found by fontconfig) and composited on top, then
 * encoded as PNG or JPEG. The rendered text image is cropped to its ink, so its size and where it was
 * composited give each line's exact box.
 */
import sharp from "sharp";
import type { ScreenContent, ScreenTheme } from "./content.ts";
import type { ScreenLanguage } from "./vocabulary.ts";

/** Fonts screens use (fontconfig family names). */
export const SCREEN_FONTS = {
  sans: "DejaVu Sans",
  mono: "DejaVu Sans Mono",
  cjk: "Noto Sans CJK SC",
} as const;

/** Scripts of a line: `cjk` when it holds any CJK character. */
export type LineScript = "latin" | "cjk";

/** What a line is on the screen. */
export type LineRole =
  | "app"
  | "title"
  | "message"
  | "code"
  | "detail"
  | "button"
  | "chrome"
  | "log"
  | "label"
  | "value"
  | "header"
  | "cell"
  | "item"
  | "total";

/** One line of text on a rendered screen, as drawn. */
export interface ScreenLine {
  text: string;
  /** `[x, y, width, height]` of the line's ink in pixels. */
  box: [number, number, number, number];
  script: LineScript;
  /** Font size in pixels. */
  fontPx: number;
  font: string;
  role: LineRole;
}

/** A rendered screen. */
export interface RenderedScreen {
  data: Buffer;
  width: number;
  height: number;
  lines: ScreenLine[];
}

interface Palette {
  background: string;
  panel: string;
  bar: string;
  border: string;
  text: string;
  muted: string;
  accent: string;
  accentText: string;
  danger: string;
  dangerBg: string;
  terminalBg: string;
  terminalText: string;
  paper: string;
  paperText: string;
}

const PALETTES: Record<ScreenTheme, Palette> = {
  light: {
    background: "#eef1f5",
    panel: "#ffffff",
    bar: "#dde3ea",
    border: "#c3cad4",
    text: "#16202c",
    muted: "#4a5563",
    accent: "#2459c8",
    accentText: "#ffffff",
    danger: "#a61b1b",
    dangerBg: "#fde8e8",
    terminalBg: "#fbf7ec",
    terminalText: "#2d2a24",
    paper: "#ffffff",
    paperText: "#1c1c1c",
  },
  dark: {
    background: "#1b2330",
    panel: "#111821",
    bar: "#0a0f16",
    border: "#3a4656",
    text: "#f1f4f8",
    muted: "#a9b4c2",
    accent: "#4f8ff0",
    accentText: "#0b1320",
    danger: "#ff8a80",
    dangerBg: "#3a1717",
    terminalBg: "#0c0c0c",
    terminalText: "#d8d8d8",
    paper: "#f4f1ea",
    paperText: "#1c1c1c",
  },
};

const CJK = /[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]/u;

/** `cjk` when the text holds a CJK character, else `latin`. */
export function scriptOf(text: string): LineScript {
  return CJK.test(text) ? "cjk" : "latin";
}

function escapeMarkup(text: string): string {
  return text.replace(/&/gu, "&amp;").replace(/</gu, "&lt;").replace(/>/gu, "&gt;");
}

/** A text rendered to an RGBA image cropped to its ink. */
export interface PaintedText {
  png: Buffer;
  width: number;
  height: number;
}

/**
 * Renders one line of text with sharp (Pango at 72 dpi, so a font size of N is N pixels).
 *
 * @param font - a fontconfig family, optionally with a style (`DejaVu Sans Bold`)
 */
export async function paintText({
  text,
  font,
  px,
  color,
}: {
  text: string;
  font: string;
  px: number;
  color: string;
}): Promise<PaintedText> {
  const { data, info } = await sharp({
    text: {
      text: `<span foreground="${color}">${escapeMarkup(text)}</span>`,
      font: `${font} ${px}`,
      dpi: 72,
      rgba: true,
    },
  })
    .png()
    .toBuffer({ resolveWithObject: true });
  return { png: data, width: info.width, height: info.height };
}

interface TextStyle {
  px: number;
  color: string;
  role: LineRole;
  bold?: boolean;
  mono?: boolean;
  /** Right edge to align to (the text ends there) instead of starting at x. */
  alignRight?: boolean;
  center?: boolean;
  /**
   * Never cut a word by characters (codes): a word wider than the line makes the text smaller, down to
   * the smallest size, before it is cut.
   */
  keepWords?: boolean;
}

const TEXT_PX_MIN = 10;

const TOKEN =
  /[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]|[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]+|\s+/gu;

/**
 * A screen being laid out: SVG shapes below, text lines composited above. Lines that would leave the
 * screen are not drawn, so every line of the ground truth is fully visible.
 */
export class ScreenCanvas {
  readonly width: number;
  readonly height: number;
  readonly palette: Palette;
  readonly language: ScreenLanguage;
  readonly #shapes: string[] = [];
  readonly #texts: Array<{ input: Buffer; left: number; top: number }> = [];
  readonly lines: ScreenLine[] = [];

  constructor({
    width,
    height,
    theme,
    language,
  }: Pick<ScreenContent, "width" | "height" | "theme" | "language">) {
    this.width = width;
    this.height = height;
    this.palette = PALETTES[theme];
    this.language = language;
  }

  /** A filled rectangle (rounded when `radius` is given), optionally with a border. */
  rect(
    x: number,
    y: number,
    w: number,
    h: number,
    fill: string,
    { radius = 0, stroke, at }: { radius?: number; stroke?: string; at?: number } = {},
  ): void {
    const border = stroke === undefined ? "" : ` stroke="${stroke}" stroke-width="1"`;
    this.#shapes.splice(
      at ?? this.#shapes.length,
      0,
      `<rect x="${Math.round(x)}" y="${Math.round(y)}" width="${Math.max(0, Math.round(w))}" height="${Math.max(0, Math.round(h))}" rx="${radius}" fill="${fill}"${border}/>`,
    );
  }

  /** Where the next shape goes: give it as `at` to draw a shape under those added after this call. */
  shapeMark(): number {
    return this.#shapes.length;
  }

  /** The font a text is drawn in: CJK text in the CJK font, the rest in sans or mono. */
  fontOf(text: string, { bold = false, mono = false }: { bold?: boolean; mono?: boolean }): string {
    const family =
      scriptOf(text) === "cjk" || (this.language === "zh" && !mono)
        ? SCREEN_FONTS.cjk
        : mono
          ? SCREEN_FONTS.mono
          : SCREEN_FONTS.sans;
    return bold ? `${family} Bold` : family;
  }

  /** Line height of a text size. */
  lineHeight(px: number): number {
    return Math.round(px * 1.5);
  }

  /**
   * Draws `text` in the slot starting at `(x, y)`: one line, or several when it is wider than `maxWidth`
   * (split at spaces, or between CJK characters). Returns the y below the last line drawn, or `null`
   * when not even the first line fits on the screen.
   */
  async text(text: string, x: number, y: number, maxWidth: number, style: TextStyle): Promise<number | null> {
    if (style.keepWords) {
      const words = text.trim().split(/\s+/u);
      let px = style.px;
      while (
        px > TEXT_PX_MIN &&
        (await Promise.all(words.map((word) => this.measure(word, { ...style, px })))).some(
          (width) => width > maxWidth,
        )
      ) {
        px -= 1;
      }
      style = { ...style, px };
    }
    const pieces = await this.#wrap(text.trim(), maxWidth, style);
    const step = this.lineHeight(style.px);
    let top = y;
    let drawn = 0;
    for (const piece of pieces) {
      if (top + step > this.height - 2) break;
      const font = this.fontOf(piece.text, style);
      const left = style.center
        ? Math.round(x + (maxWidth - piece.painted.width) / 2)
        : style.alignRight
          ? Math.round(x + maxWidth - piece.painted.width)
          : Math.round(x);
      const inkTop = Math.round(top + (step - piece.painted.height) / 2);
      if (left < 0 || left + piece.painted.width > this.width || inkTop < 0) break;
      this.#texts.push({ input: piece.painted.png, left, top: inkTop });
      this.lines.push({
        text: piece.text,
        box: [left, inkTop, piece.painted.width, piece.painted.height],
        script: scriptOf(piece.text),
        fontPx: style.px,
        font,
        role: style.role,
      });
      top += step;
      drawn += 1;
    }
    return drawn === 0 ? null : top;
  }

  /** Measures a text as drawn (its ink width). */
  async measure(text: string, style: Pick<TextStyle, "px" | "bold" | "mono">): Promise<number> {
    const painted = await paintText({ text, font: this.fontOf(text, style), px: style.px, color: "#000000" });
    return painted.width;
  }

  async #wrap(
    text: string,
    maxWidth: number,
    style: TextStyle,
  ): Promise<Array<{ text: string; painted: PaintedText }>> {
    const out: Array<{ text: string; painted: PaintedText }> = [];
    let rest = text;
    while (rest.length > 0) {
      const paint = (value: string) =>
        paintText({ text: value, font: this.fontOf(value, style), px: style.px, color: style.color });
      let painted = await paint(rest);
      if (painted.width <= maxWidth) {
        out.push({ text: rest, painted });
        break;
      }
      const tokens = rest.match(TOKEN) ?? [rest];
      // Estimate where the line breaks from the average width per character, then step back until it fits.
      const perChar = painted.width / rest.length;
      let take = 0;
      let length = 0;
      while (take < tokens.length && (length + (tokens[take] as string).length) * perChar <= maxWidth) {
        length += (tokens[take] as string).length;
        take += 1;
      }
      let piece = tokens.slice(0, Math.max(1, take)).join("").trimEnd();
      painted = await paint(piece);
      while (painted.width > maxWidth && take > 1) {
        take -= 1;
        piece = tokens.slice(0, take).join("").trimEnd();
        painted = await paint(piece);
      }
      if (painted.width > maxWidth) {
        // One token wider than the line: cut it by characters.
        let chars = Math.max(1, Math.floor(maxWidth / perChar));
        piece = rest.slice(0, chars);
        painted = await paint(piece);
        while (painted.width > maxWidth && chars > 1) {
          chars -= 1;
          piece = rest.slice(0, chars);
          painted = await paint(piece);
        }
      }
      out.push({ text: piece.trim(), painted });
      rest = rest.slice(piece.length).trimStart();
    }
    return out.filter((piece) => piece.text.length > 0);
  }

  /** Rasterizes the shapes, composites the text and encodes the screen. */
  async encode({ format, quality }: { format: "png" | "jpeg"; quality?: number }): Promise<Buffer> {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}"><rect width="100%" height="100%" fill="${this.palette.background}"/>${this.#shapes.join("")}</svg>`;
    const image = sharp(Buffer.from(svg))
      .composite(this.#texts)
      .flatten({ background: this.palette.background });
    return format === "png"
      ? image.png({ compressionLevel: 6 }).toBuffer()
      : image.jpeg({ quality: quality ?? 90, chromaSubsampling: "4:2:0" }).toBuffer();
  }

  /** The screen without its text, as raw RGB (tests compare it with the full render). */
  async rawWithoutText(): Promise<Buffer> {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}"><rect width="100%" height="100%" fill="${this.palette.background}"/>${this.#shapes.join("")}</svg>`;
    return sharp(Buffer.from(svg))
      .flatten({ background: this.palette.background })
      .removeAlpha()
      .raw()
      .toBuffer();
  }

  /** The screen with its text, as raw RGB. */
  async raw(): Promise<Buffer> {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}"><rect width="100%" height="100%" fill="${this.palette.background}"/>${this.#shapes.join("")}</svg>`;
    const flat = await sharp(Buffer.from(svg)).composite(this.#texts).png().toBuffer();
    return sharp(flat).flatten({ background: this.palette.background }).removeAlpha().raw().toBuffer();
  }
}

const clampPx = (px: number) => Math.max(10, Math.min(24, Math.round(px)));

/** A menu bar of chrome words across the top; returns its height. */
async function menuBar(canvas: ScreenCanvas, content: ScreenContent, px: number): Promise<number> {
  const { palette } = canvas;
  const height = canvas.lineHeight(px) + Math.round(px * 0.6);
  canvas.rect(0, 0, canvas.width, height, palette.bar);
  let x = Math.round(px * 0.8);
  const y = Math.round(px * 0.3);
  for (const word of [content.app, ...content.chrome]) {
    const width = await canvas.measure(word, { px, bold: word === content.app });
    if (x + width > canvas.width - px) break;
    await canvas.text(word, x, y, width + 1, {
      px,
      color: word === content.app ? palette.text : palette.muted,
      role: word === content.app ? "app" : "chrome",
      bold: word === content.app,
    });
    x += width + Math.round(px * 1.6);
  }
  return height;
}

/** Buttons right-aligned at `(right, y)`; returns the y below them. */
async function buttons(
  canvas: ScreenCanvas,
  labels: readonly string[],
  right: number,
  y: number,
  px: number,
): Promise<number> {
  const { palette } = canvas;
  const padX = Math.round(px * 1.1);
  const height = canvas.lineHeight(px) + Math.round(px * 0.5);
  let x = right;
  const laid: Array<{ label: string; x: number; width: number; primary: boolean }> = [];
  for (const [index, label] of [...labels].reverse().entries()) {
    const width = (await canvas.measure(label, { px })) + padX * 2;
    x -= width;
    laid.push({ label, x, width, primary: index === 0 });
    x -= Math.round(px * 0.8);
  }
  for (const button of laid) {
    if (button.x < 0) continue;
    canvas.rect(button.x, y, button.width, height, button.primary ? palette.accent : palette.panel, {
      radius: 4,
      stroke: palette.border,
    });
    await canvas.text(button.label, button.x, y + Math.round(px * 0.25), button.width, {
      px,
      color: button.primary ? palette.accentText : palette.text,
      role: "button",
      center: true,
    });
  }
  return y + height;
}

function codedMessage(content: ScreenContent): string {
  return content.codeInline ? `${content.code}: ${content.message}` : content.message;
}

async function layoutDialog(canvas: ScreenCanvas, content: ScreenContent, px: number): Promise<void> {
  const { palette } = canvas;
  const top = await menuBar(canvas, content, clampPx(px * 0.95));
  const width = Math.round(Math.min(canvas.width * 0.72, 620 * content.scale, canvas.width - 2 * px));
  const x = Math.round((canvas.width - width) / 2);
  // Page content beside the dialog, where there is room for it.
  let y = top + px;
  const sideWidth = x - 2 * px;
  for (const word of sideWidth >= 40 ? content.chrome.slice(0, 4) : []) {
    const next = await canvas.text(word, px, y, sideWidth, {
      px: clampPx(px * 0.9),
      color: palette.muted,
      role: "chrome",
    });
    if (next === null) break;
    y = next + Math.round(px * 0.4);
  }
  const dialogTop = Math.round(top + Math.max(px, canvas.height * 0.12));
  const pad = Math.round(px * 1.2);
  const inner = width - 2 * pad;
  const titleBar = canvas.lineHeight(px) + Math.round(px * 0.4);
  const bodyStart = dialogTop + titleBar + pad;
  const panelMark = canvas.shapeMark();
  canvas.rect(x, dialogTop, width, titleBar, palette.bar, { radius: 6 });
  await canvas.text(content.app, x + pad, dialogTop + Math.round(px * 0.2), inner, {
    px,
    color: palette.text,
    role: "app",
  });
  y = bodyStart;
  y =
    (await canvas.text(content.title, x + pad, y, inner, {
      px: clampPx(px * 1.35),
      color: palette.danger,
      role: "title",
      bold: true,
    })) ?? y;
  y =
    (await canvas.text(codedMessage(content), x + pad, y + Math.round(px * 0.3), inner, {
      px,
      color: palette.text,
      role: "message",
      keepWords: true,
    })) ?? y;
  // The code right under the message, so that it is on the screen however little room is left.
  if (!content.codeInline) {
    y =
      (await canvas.text(content.codeLine, x + pad, y + Math.round(px * 0.3), inner, {
        px,
        color: palette.text,
        role: "code",
        keepWords: true,
        mono: true,
      })) ?? y;
  }
  for (const detail of content.details) {
    y =
      (await canvas.text(detail, x + pad, y, inner, {
        px: clampPx(px * 0.92),
        color: palette.muted,
        role: "detail",
      })) ?? y;
  }
  const bottom = await buttons(canvas, content.buttons, x + width - pad, y + pad, px);
  // The panel, as tall as what it holds, under everything drawn on it.
  canvas.rect(x, dialogTop, width, Math.min(bottom + pad, canvas.height - px) - dialogTop, palette.panel, {
    radius: 6,
    stroke: palette.border,
    at: panelMark,
  });
}

async function layoutToast(canvas: ScreenCanvas, content: ScreenContent, px: number): Promise<void> {
  const { palette } = canvas;
  const top = await menuBar(canvas, content, clampPx(px * 0.95));
  // A page of list rows behind the toast.
  let y = top + px;
  const listPx = clampPx(px * 0.95);
  for (const word of content.chrome) {
    const next = await canvas.text(word, px * 1.5, y, canvas.width * 0.3, {
      px: listPx,
      color: palette.text,
      role: "chrome",
    });
    if (next === null) break;
    canvas.rect(px, next + 2, canvas.width * 0.45, 1, palette.border);
    y = next + Math.round(px * 0.6);
  }
  const width = Math.round(Math.min(canvas.width * 0.5, 440 * content.scale));
  const x = canvas.width - width - px;
  const pad = Math.round(px);
  const boxTop = top + px;
  // The box is as tall as its text, drawn under it once that is known.
  const boxMark = canvas.shapeMark();
  let inner = boxTop + pad;
  inner =
    (await canvas.text(content.title, x + pad, inner, width - 2 * pad, {
      px: clampPx(px * 1.15),
      color: palette.danger,
      role: "title",
      bold: true,
    })) ?? inner;
  inner =
    (await canvas.text(codedMessage(content), x + pad, inner, width - 2 * pad, {
      px,
      color: palette.text,
      role: "message",
      keepWords: true,
    })) ?? inner;
  if (!content.codeInline) {
    inner =
      (await canvas.text(content.codeLine, x + pad, inner, width - 2 * pad, {
        px: clampPx(px * 0.92),
        color: palette.muted,
        role: "code",
        keepWords: true,
        mono: true,
      })) ?? inner;
  }
  const detail = content.details[0];
  if (detail !== undefined) {
    inner =
      (await canvas.text(detail, x + pad, inner, width - 2 * pad, {
        px: clampPx(px * 0.92),
        color: palette.muted,
        role: "detail",
      })) ?? inner;
  }
  canvas.rect(x, boxTop, width, Math.min(inner + pad, canvas.height - px) - boxTop, palette.dangerBg, {
    radius: 8,
    stroke: palette.danger,
    at: boxMark,
  });
}

async function layoutTerminal(canvas: ScreenCanvas, content: ScreenContent, px: number): Promise<void> {
  const { palette } = canvas;
  const bar = canvas.lineHeight(px) + Math.round(px * 0.4);
  canvas.rect(0, 0, canvas.width, canvas.height, palette.terminalBg);
  canvas.rect(0, 0, canvas.width, bar, palette.bar);
  await canvas.text(`${content.app} — bash`, 0, Math.round(px * 0.2), canvas.width, {
    px,
    color: palette.text,
    role: "app",
    center: true,
  });
  const left = Math.round(px * 0.8);
  const width = canvas.width - 2 * left;
  const step = canvas.lineHeight(px);
  const slots = Math.floor((canvas.height - bar - px) / step);
  const errorLines = 4 + content.details.length;
  const rows = content.rows.slice(0, Math.max(1, slots - errorLines - 1));
  let y = bar + Math.round(px * 0.5);
  const style = { px, color: palette.terminalText, mono: true } as const;
  y = (await canvas.text(content.header[0] ?? "$", left, y, width, { ...style, role: "header" })) ?? y;
  for (const [line] of rows) {
    const next = await canvas.text(line ?? "", left, y, width, { ...style, role: "log" });
    if (next === null) return;
    y = next;
  }
  const level = content.language === "zh" ? "错误" : "ERROR";
  y =
    (await canvas.text(`${content.time} ${level} ${codedMessage(content)}`, left, y, width, {
      ...style,
      color: palette.danger,
      role: "message",
      keepWords: true,
    })) ?? y;
  if (!content.codeInline)
    y =
      (await canvas.text(`  ${content.codeLine}`, left, y, width, {
        ...style,
        role: "code",
        keepWords: true,
      })) ?? y;
  for (const detail of content.details) {
    const next = await canvas.text(`  ${detail}`, left, y, width, {
      ...style,
      color: palette.muted,
      role: "detail",
    });
    if (next === null) return;
    y = next;
  }
}

async function layoutForm(canvas: ScreenCanvas, content: ScreenContent, px: number): Promise<void> {
  const { palette } = canvas;
  const top = await menuBar(canvas, content, clampPx(px * 0.95));
  const width = Math.round(Math.min(canvas.width * 0.8, 640 * content.scale));
  const x = Math.round((canvas.width - width) / 2);
  const pad = Math.round(px * 1.2);
  canvas.rect(x, top + px, width, canvas.height - top - 2 * px, palette.panel, {
    radius: 6,
    stroke: palette.border,
  });
  let y = top + px + pad;
  const heading = content.language === "zh" ? `${content.title} — 设置` : `${content.title} — Settings`;
  y =
    (await canvas.text(heading, x + pad, y, width - 2 * pad, {
      px: clampPx(px * 1.3),
      color: palette.text,
      role: "title",
      bold: true,
    })) ?? y;
  // The error banner: measured by drawing into it, its box drawn first with room for three lines.
  const bannerTop = y + Math.round(px * 0.4);
  const bannerLines = content.codeInline ? 2 : 3;
  const bannerHeight = canvas.lineHeight(px) * bannerLines + pad;
  canvas.rect(x + pad, bannerTop, width - 2 * pad, bannerHeight, palette.dangerBg, {
    radius: 4,
    stroke: palette.danger,
  });
  let inner = bannerTop + Math.round(pad / 2);
  const bannerWidth = width - 4 * pad;
  inner =
    (await canvas.text(codedMessage(content), x + 2 * pad, inner, bannerWidth, {
      px,
      color: palette.danger,
      role: "message",
      keepWords: true,
    })) ?? inner;
  if (!content.codeInline) {
    inner =
      (await canvas.text(content.codeLine, x + 2 * pad, inner, bannerWidth, {
        px,
        color: palette.danger,
        role: "code",
        keepWords: true,
        mono: true,
      })) ?? inner;
  }
  y = Math.max(inner, bannerTop + bannerHeight) + pad;
  const labelWidth = Math.round(width * 0.3);
  for (const [label, value] of content.rows) {
    const step = canvas.lineHeight(px) + Math.round(px * 0.8);
    if (y + step > canvas.height - 2 * px) break;
    const labelBottom = await canvas.text(label ?? "", x + pad, y + Math.round(px * 0.4), labelWidth - pad, {
      px,
      color: palette.muted,
      role: "label",
    });
    const valueBottom = await canvas.text(
      value ?? "",
      x + labelWidth + Math.round(px * 0.5),
      y + Math.round(px * 0.4),
      width - labelWidth - pad - px,
      { px, color: palette.text, role: "value" },
    );
    const bottom = Math.max(
      y + step,
      (labelBottom ?? 0) + Math.round(px * 0.4),
      (valueBottom ?? 0) + Math.round(px * 0.4),
    );
    canvas.rect(x + labelWidth, y, width - labelWidth - pad, bottom - y - 4, palette.background, {
      radius: 3,
      stroke: palette.border,
    });
    y = bottom + Math.round(px * 0.4);
  }
  if (y + canvas.lineHeight(px) * 2 < canvas.height - px)
    await buttons(canvas, content.buttons, x + width - pad, y, px);
}

async function layoutTable(
  canvas: ScreenCanvas,
  content: ScreenContent,
  px: number,
  errorRow: number,
): Promise<void> {
  const { palette } = canvas;
  // Four columns side by side: text no larger than a fiftieth of the screen's width.
  px = Math.min(px, Math.max(TEXT_PX_MIN, Math.floor(canvas.width / 50)));
  const top = await menuBar(canvas, content, clampPx(px * 0.95));
  const x = px;
  const width = canvas.width - 2 * px;
  canvas.rect(x, top + px, width, canvas.height - top - 2 * px, palette.panel, {
    radius: 4,
    stroke: palette.border,
  });
  let y = top + px + Math.round(px * 0.8);
  const heading = content.language === "zh" ? "服务状态" : "Service status";
  y =
    (await canvas.text(heading, x + px, y, width - 2 * px, {
      px: clampPx(px * 1.25),
      color: palette.text,
      role: "title",
      bold: true,
    })) ?? y;
  const fractions = [0.13, 0.16, 0.33, 0.38];
  const columns: Array<{ left: number; width: number }> = [];
  let left = x + px;
  for (const fraction of fractions) {
    const columnWidth = Math.round((width - 2 * px) * fraction);
    columns.push({ left, width: columnWidth - Math.round(px * 0.6) });
    left += columnWidth;
  }
  const errorStatus = content.code;
  const rows = [...content.rows];
  const error: readonly string[] = [content.time, content.facts.service, errorStatus, content.message];
  // The error row goes where it still fits, whatever the rows above it take (two lines each at most).
  const room = Math.floor(
    (canvas.height - 2 * px - y - 2 * canvas.lineHeight(px)) / (2 * canvas.lineHeight(px) + 2),
  );
  rows.splice(Math.max(0, Math.min(errorRow, rows.length, room - 1)), 0, error);
  const drawRow = async (
    cells: readonly string[],
    role: "header" | "cell",
    rowTop: number,
    color: string,
    isError: boolean,
  ) => {
    let bottom = rowTop + canvas.lineHeight(px);
    for (const [index, cell] of cells.entries()) {
      const column = columns[index];
      if (column === undefined) continue;
      const cellRole = isError ? (index === 2 ? "code" : index === 3 ? "message" : "cell") : role;
      const next = await canvas.text(cell, column.left, rowTop, column.width, {
        px,
        color,
        role: cellRole,
        bold: role === "header",
        mono: isError && index === 2,
        keepWords: true,
      });
      if (next !== null) bottom = Math.max(bottom, next);
    }
    return bottom;
  };
  y += Math.round(px * 0.4);
  canvas.rect(x + 1, y, width - 2, canvas.lineHeight(px), palette.bar);
  y = await drawRow(content.header, "header", y, palette.text, false);
  for (const row of rows) {
    if (y + canvas.lineHeight(px) > canvas.height - 2 * px) break;
    const isError = row === error;
    const rowTop = y;
    y = await drawRow(row, "cell", y, isError ? palette.danger : palette.text, isError);
    if (isError) canvas.rect(x + 1, rowTop, width - 2, y - rowTop, palette.dangerBg);
    canvas.rect(x + px, y, width - 2 * px, 1, palette.border);
    y += 2;
  }
}

async function layoutReceipt(canvas: ScreenCanvas, content: ScreenContent, px: number): Promise<void> {
  const { palette } = canvas;
  const width = Math.round(Math.min(canvas.width * 0.6, 400 * content.scale));
  const x = Math.round((canvas.width - width) / 2);
  const pad = Math.round(px * 1.2);
  canvas.rect(x, px, width, canvas.height - 2 * px, palette.paper, { stroke: palette.border });
  const inner = width - 2 * pad;
  const style = { px, color: palette.paperText, mono: true } as const;
  let y = px + pad;
  y =
    (await canvas.text(content.app, x + pad, y, inner, {
      ...style,
      px: clampPx(px * 1.25),
      role: "app",
      bold: true,
      center: true,
    })) ?? y;
  y =
    (await canvas.text(`${content.date} ${content.time}`, x + pad, y, inner, {
      ...style,
      role: "detail",
      center: true,
    })) ?? y;
  canvas.rect(x + pad, y + 4, inner, 1, palette.paperText);
  y += 10;
  for (const [name, price] of content.rows) {
    if (y + canvas.lineHeight(px) * 5 > canvas.height - px) break;
    const priceWidth = await canvas.measure(price ?? "", style);
    const nameBottom = await canvas.text(name ?? "", x + pad, y, inner - priceWidth - px, {
      ...style,
      role: "item",
    });
    const priceBottom = await canvas.text(price ?? "", x + pad, y, inner, {
      ...style,
      role: "item",
      alignRight: true,
    });
    y = Math.max(y, nameBottom ?? y, priceBottom ?? y);
  }
  canvas.rect(x + pad, y + 4, inner, 1, palette.paperText);
  y += 10;
  y =
    (await canvas.text(content.header[0] ?? "", x + pad, y, inner, {
      ...style,
      role: "total",
      bold: true,
    })) ?? y;
  y =
    (await canvas.text(codedMessage(content), x + pad, y + Math.round(px * 0.4), inner, {
      ...style,
      role: "message",
      keepWords: true,
    })) ?? y;
  if (!content.codeInline)
    y =
      (await canvas.text(content.codeLine, x + pad, y, inner, { ...style, role: "code", keepWords: true })) ??
      y;
  for (const detail of content.details) {
    const next = await canvas.text(detail, x + pad, y, inner, { ...style, role: "detail" });
    if (next === null) break;
    y = next;
  }
}

/**
 * Lays out and renders a screen. `errorRow` places the error among a table's rows. Returns the canvas
 * too, for tests that compare the screen with and without its text.
 */
export async function renderScreen(
  content: ScreenContent,
  { errorRow = 0 }: { errorRow?: number } = {},
): Promise<RenderedScreen & { canvas: ScreenCanvas }> {
  const canvas = new ScreenCanvas(content);
  const px = clampPx(content.basePx * content.scale);
  if (content.kind === "dialog") await layoutDialog(canvas, content, px);
  else if (content.kind === "toast") await layoutToast(canvas, content, px);
  else if (content.kind === "terminal") await layoutTerminal(canvas, content, px);
  else if (content.kind === "form") await layoutForm(canvas, content, px);
  else if (content.kind === "table") await layoutTable(canvas, content, px, errorRow);
  else await layoutReceipt(canvas, content, px);
  const data = await canvas.encode({
    format: content.format,
    ...(content.quality === undefined ? {} : { quality: content.quality }),
  });
  return { data, width: content.width, height: content.height, lines: canvas.lines, canvas };
}
