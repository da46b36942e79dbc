/**
 * What a screen says before it is laid out: its kind, language, look (size, theme, scale, format), the
 * app, the error (topic, code, the facts its message names) and every text it shows, in groups the
 * layouts of `render.ts` place. Everything comes from one {@link Rng}, so a seed fixes the screen.
 */
import type { Rng } from "../rng.ts";
import {
  APP_NAMES,
  BUTTONS,
  CHROME_WORDS,
  CODE_PREFIXES,
  CODE_TAILS,
  COMMANDS,
  DOMAINS,
  type ErrorTopic,
  type FactKind,
  FILE_EXTS,
  FILE_STEMS,
  FIRST_NAMES,
  FORM_FIELDS,
  HOST_WORDS,
  LAST_NAMES,
  LOG_LINES,
  PATH_ROOTS,
  PATH_WORDS,
  PORTS_BY_SERVICE,
  RECEIPT_ITEMS,
  type ScreenLanguage,
  SERVICES,
  TABLE_NAMES,
  ZH_NAMES,
} from "./vocabulary.ts";

/** Kinds of screens. */
export const SCREEN_KINDS = ["dialog", "toast", "terminal", "form", "table", "receipt"] as const;
export type ScreenKind = (typeof SCREEN_KINDS)[number];

/** Screen sizes in pixels, large to small. */
export const SCREEN_SIZES = [
  [1280, 800],
  [1024, 640],
  [800, 600],
  [640, 400],
  [480, 320],
] as const;

export const SCREEN_THEMES = ["light", "dark"] as const;
export type ScreenTheme = (typeof SCREEN_THEMES)[number];

/** Scale factors (a display's zoom): text and spacing grow with it. */
export const SCREEN_SCALES = [1, 1.25, 1.5] as const;

export const SCREEN_FORMATS = ["png", "jpeg"] as const;
export type ScreenFormat = (typeof SCREEN_FORMATS)[number];

/** JPEG qualities screens are encoded at. */
export const JPEG_QUALITIES = [95, 85, 75, 65] as const;

/** Smallest and largest text size in pixels. */
export const TEXT_PX_RANGE = { min: 10, max: 24 } as const;

/** Shapes of error codes. */
export const CODE_FAMILIES = ["e-number", "err-name", "hex", "prefixed"] as const;
export type CodeFamily = (typeof CODE_FAMILIES)[number];

/** The facts of one screen's error, filled in. */
export type Facts = Record<FactKind, string>;

/** A label and its value (form fields, receipt lines, table cells of one row). */
export type Row = readonly string[];

/** What a screen shows, before layout. */
export interface ScreenContent {
  kind: ScreenKind;
  language: ScreenLanguage;
  width: number;
  height: number;
  theme: ScreenTheme;
  scale: number;
  format: ScreenFormat;
  /** JPEG quality (absent for PNG). */
  quality?: number;
  /** Body text size in pixels before scaling. */
  basePx: number;
  app: string;
  topic: ErrorTopic;
  code: string;
  codeFamily: CodeFamily;
  facts: Facts;
  /** The error's title ("Connection failed"). */
  title: string;
  /** The error's message, filled in ("Connection refused on port 5432"). */
  message: string;
  /** Whether the message line starts with the code ("E1234: …"). */
  codeInline: boolean;
  /** The line naming the code on its own ("Error code: E1234"), when not inline. */
  codeLine: string;
  details: string[];
  buttons: string[];
  /** Menu or sidebar words around the content. */
  chrome: string[];
  /** Kind-specific lines: log lines, form fields, table rows, receipt lines. */
  rows: Row[];
  /** A header row (tables) or a heading (receipts, terminals). */
  header: Row;
  /** Time shown on the screen (`09:21:07`). */
  time: string;
  date: string;
}

const pad = (value: number, width = 2) => String(value).padStart(width, "0");

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** A date in one of the ways screens write them: ISO, day month year, US, or Chinese. */
function dateOf(rng: Rng, language: ScreenLanguage = "en"): string {
  const year = rng.int(2019, 2027);
  const month = rng.int(1, 12);
  const day = rng.int(1, 28);
  const style = rng.int(0, 3);
  if (style === 0 || style === 1) return `${year}-${pad(month)}-${pad(day)}`;
  if (language === "zh") return `${year}年${month}月${day}日`;
  return style === 2 ? `${day} ${MONTHS[month - 1]} ${year}` : `${pad(month)}/${pad(day)}/${year}`;
}

function timeOf(rng: Rng): string {
  return `${pad(rng.int(0, 23))}:${pad(rng.int(0, 59))}:${pad(rng.int(0, 59))}`;
}

function hostOf(rng: Rng): string {
  const word = rng.pick(HOST_WORDS);
  return `${word}${rng.bool(0.5) ? `-${rng.int(1, 42)}` : ""}.${rng.pick(DOMAINS)}`;
}

function pathOf(rng: Rng): string {
  const root = rng.pick(PATH_ROOTS);
  const windows = root.includes("\\");
  const parts = [rng.pick(PATH_WORDS)];
  if (rng.bool(0.6)) parts.push(rng.pick(PATH_WORDS) + (rng.bool(0.3) ? String(rng.int(1, 2030)) : ""));
  return windows ? `${root}\\${parts.join("\\")}` : `${root}/${parts.join("/")}`;
}

function fileOf(rng: Rng): string {
  const stem = rng.pick(FILE_STEMS);
  const suffix = rng.pick(["", `_${rng.int(1, 99)}`, `-${rng.int(2019, 2027)}`, `_v${rng.int(2, 9)}`]);
  return `${stem}${suffix}.${rng.pick(FILE_EXTS)}`;
}

function userOf(rng: Rng, language: ScreenLanguage): string {
  if (language === "zh" && rng.bool(0.4)) return rng.pick(ZH_NAMES);
  const first = rng.pick(FIRST_NAMES);
  return rng.bool(0.5) ? `${first}.${rng.pick(LAST_NAMES).toLowerCase()}` : `${first}${rng.int(1, 99)}`;
}

/** A number, with a thousands separator now and then (`12,288`). */
function thousands(rng: Rng, value: number): string {
  return value >= 1000 && rng.bool(0.3) ? value.toLocaleString("en-US") : String(value);
}

/** Every fact a template may name, sampled for one screen. */
export function sampleFacts(rng: Rng, language: ScreenLanguage): Facts {
  const service = rng.pick(SERVICES);
  const amount = rng.int(5, 4999) + rng.int(0, 99) / 100;
  return {
    service,
    port: String(rng.bool(0.8) ? rng.pick(PORTS_BY_SERVICE[service] ?? [8080]) : rng.int(1024, 65000)),
    host: hostOf(rng),
    ip: rng.pick([
      `10.${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(1, 254)}`,
      `192.168.${rng.int(0, 255)}.${rng.int(1, 254)}`,
      `172.${rng.int(16, 31)}.${rng.int(0, 255)}.${rng.int(1, 254)}`,
    ]),
    path: pathOf(rng),
    file: fileOf(rng),
    user: userOf(rng, language),
    date: dateOf(rng, language),
    seconds: String(rng.pick([5, 10, 15, 30, 45, 60, 90, 120, rng.int(2, 300)])),
    megabytes: thousands(rng, rng.pick([128, 256, 512, 1024, 2048, rng.int(16, 99_999)])),
    version: `${rng.int(1, 19)}.${rng.int(0, 24)}.${rng.int(0, 40)}`,
    card: pad(rng.int(0, 9999), 4),
    amount: language === "zh" ? `¥${amount.toFixed(2)}` : `$${amount.toFixed(2)}`,
    count: String(rng.int(2, 97)),
    table: rng.pick(TABLE_NAMES),
  };
}

/** Fills `{fact}` placeholders; `{time}` takes the screen's time. */
export function fill(template: string, facts: Facts, time: string): string {
  return template.replace(/\{(\w+)\}/gu, (whole, name: string) => {
    if (name === "time") return time;
    return Object.hasOwn(facts, name) ? facts[name as FactKind] : whole;
  });
}

/** A code of `family` for `topic`. */
export function sampleCode(rng: Rng, family: CodeFamily, topic: ErrorTopic): string {
  if (family === "e-number") return `E${rng.int(1000, 9999)}`;
  if (family === "hex") {
    const high = rng.pick(["8007", "C000", "8004", "8010"]);
    return `0x${high}${rng.int(0, 0xffff).toString(16).toUpperCase().padStart(4, "0")}`;
  }
  if (family === "prefixed") return `${rng.pick(CODE_PREFIXES)}-${rng.int(10000, 99999)}`;
  const words = rng.pick(topic.codeWords);
  return `ERR_${words}${rng.bool(0.6) ? `_${rng.pick(CODE_TAILS)}` : ""}_${rng.int(10, 99)}`;
}

const codeLabel = (language: ScreenLanguage, rng: Rng) =>
  language === "zh"
    ? rng.pick(["错误代码：", "错误码：", "代码："])
    : rng.pick(["Error code: ", "Code: ", "Error ", "Reference: "]);

function logLines(
  rng: Rng,
  content: Pick<ScreenContent, "language" | "facts" | "date">,
  count: number,
): Row[] {
  const rows: Row[] = [];
  let seconds = rng.int(0, 3600 * 20);
  for (let index = 0; index < count; index++) {
    seconds += rng.int(0, 40);
    const stamp = `${pad(Math.floor(seconds / 3600) % 24)}:${pad(Math.floor(seconds / 60) % 60)}:${pad(seconds % 60)}`;
    const facts = { ...content.facts, count: String(rng.int(1, 99)), seconds: String(rng.int(3, 900)) };
    rows.push([`${stamp} ${fill(rng.pick(LOG_LINES[content.language]), facts, stamp)}`]);
  }
  return rows;
}

/**
 * One screen's content. `code` comes from the caller (the dataset keeps codes unique); the rest is drawn
 * from `rng`.
 */
export function sampleScreenContent({
  rng,
  kind,
  language,
  code,
  codeFamily,
  topic,
}: {
  rng: Rng;
  kind: ScreenKind;
  language: ScreenLanguage;
  code: string;
  codeFamily: CodeFamily;
  topic: ErrorTopic;
}): ScreenContent {
  const sizes = kind === "toast" || kind === "dialog" ? SCREEN_SIZES : SCREEN_SIZES.slice(0, 4);
  const [width, height] = rng.pick(sizes);
  const small = width < 700;
  const scale = small ? rng.pick([1, 1.25]) : rng.pick(SCREEN_SCALES);
  const format = rng.pick(SCREEN_FORMATS);
  const facts = sampleFacts(rng, language);
  const time = timeOf(rng);
  const date = dateOf(rng, language);
  const appName = language === "zh" && rng.bool(0.6) ? rng.pick(APP_NAMES.zh) : rng.pick(APP_NAMES.en);
  const message = fill(rng.pick(topic.message[language]), facts, time);
  const details = rng
    .shuffle(topic.detail[language])
    .slice(0, rng.int(1, 2))
    .map((line) => fill(line, facts, time));
  const content: ScreenContent = {
    kind,
    language,
    width,
    height,
    theme: rng.pick(["light", "dark"] as const),
    scale,
    format,
    ...(format === "jpeg" ? { quality: rng.pick(JPEG_QUALITIES) } : {}),
    basePx: small ? rng.int(10, 14) : rng.int(11, 16),
    app: appName,
    topic,
    code,
    codeFamily,
    facts,
    title: rng.pick(topic.title[language]),
    message,
    codeInline: rng.bool(0.35),
    codeLine: `${codeLabel(language, rng)}${code}`,
    details,
    buttons: [...rng.pick(BUTTONS[language])],
    chrome: rng.shuffle(CHROME_WORDS[language]).slice(0, rng.int(4, 7)),
    rows: [],
    header: [],
    time,
    date,
  };
  if (kind === "terminal") {
    const command = fill(rng.pick(COMMANDS), facts, time);
    content.header = [
      `${facts.user.replace(/[^\x20-\x7e]/gu, "") || "ops"}@${facts.host.split(".")[0]}:~$ ${command}`,
    ];
    content.rows = logLines(rng, content, rng.int(4, 12));
  } else if (kind === "form") {
    const fields = rng.shuffle(FORM_FIELDS[language]).slice(0, rng.int(3, 5));
    content.rows = fields.map(([label, fact]) => [label, facts[fact]]);
  } else if (kind === "table") {
    content.header =
      language === "zh" ? ["时间", "服务", "状态", "说明"] : ["Time", "Service", "Status", "Message"];
    const okWords = language === "zh" ? ["正常", "成功", "运行中"] : ["OK", "Running", "Healthy", "Done"];
    const okNotes =
      language === "zh"
        ? ["备份完成", "同步完成", "已重启", "无异常", "已部署"]
        : ["backup finished", "sync complete", "restarted", "no issues", "deployed", "cache cleared"];
    const rows: Row[] = [];
    const count = rng.int(3, 7);
    for (let index = 0; index < count; index++) {
      rows.push([timeOf(rng), rng.pick(SERVICES), rng.pick(okWords), rng.pick(okNotes)]);
    }
    content.rows = rows;
  } else if (kind === "receipt") {
    const items = rng.shuffle(RECEIPT_ITEMS[language]).slice(0, rng.int(2, 6));
    const currency = language === "zh" ? "¥" : "$";
    let total = 0;
    content.rows = items.map(([name, price]) => {
      const quantity = rng.int(1, 3);
      const cost = Math.round(price * quantity * (0.9 + rng.next() * 0.2) * 100) / 100;
      total += cost;
      return [quantity > 1 ? `${name} x${quantity}` : name, `${currency}${cost.toFixed(2)}`];
    });
    const totalText = `${currency}${total.toFixed(2)}`;
    content.facts.amount = totalText;
    content.header = [language === "zh" ? `合计 ${totalText}` : `TOTAL ${totalText}`];
    // A receipt's message is about the payment whatever the topic says.
    content.message = fill(rng.pick(topic.message[language]), content.facts, time);
  }
  return content;
}
