/**
 * The UI's words in English and Chinese. The language comes from `data-lang` when given, else from the
 * browser's language; anything but Chinese gets English. Pure, so the tables are checked for the same
 * keys in a unit test.
 */

/** Every string the UI shows. `{n}`, `{max}`, `{size}` and `{name}` are filled in by {@link format}. */
export const en = {
  title: "Ask Loupe",
  open: "Open the assistant",
  close: "Close",
  input: "Your question",
  placeholder: "Ask about your images and videos…",
  send: "Send",
  stop: "Stop",
  retry: "Retry",
  attach: "Attach images",
  removeAttachment: "Remove {name}",
  limits: "Up to {max} images, {size} each. Paste or drop a screenshot here.",
  you: "You",
  assistant: "Loupe",
  thinking: "Looking through the corpus…",
  answering: "Answering…",
  answered: "Answer ready.",
  stopped: "Stopped.",
  copy: "Copy answer",
  copied: "Copied.",
  feedbackUp: "Helpful",
  feedbackDown: "Not helpful",
  feedbackThanks: "Thanks for the feedback.",
  correct: "Correct this answer",
  correctionPrompt: "What is the right answer?",
  sendCorrection: "Send correction",
  citation: "Source {n}: {name}",
  viewer: "Source",
  searchLabel: "Search the corpus",
  searchPlaceholder: "Search by words, or attach an image…",
  searchSubmit: "Search",
  searchImage: "Search by image",
  searchHint: "Results appear here. Choose one to ask about it.",
  searchNone: "Nothing found.",
  searchCount: "{n} results.",
  askAbout: "Ask about {name}",
  tellMeAbout: "Tell me about [{name}]",
  dropHere: "Drop images to attach them",
  tooManyImages: "Too many images: at most {max} per conversation.",
  tooLargeImage: "{name} is too large: images may be at most {size}.",
  notImage: "{name} is not an image (JPEG, PNG, WebP or GIF).",
  errorNotAllowed: "This site is not allowed to use the assistant, or the key is not valid.",
  errorTooMany: "There have been too many questions in a short time. Wait a moment and retry.",
  errorTooLarge: "The question or its images are too large to send. Remove an image and retry.",
  errorOffline: "You seem to be offline, or the assistant cannot be reached. Retry when you are connected.",
  errorBusy: "The assistant is busy or its store is down. Retry in a moment.",
  errorInvalid: "The assistant could not read this question: {message}",
  errorNotFound: "This is not available here.",
  errorOther: "Something went wrong. Retry, and if it happens again tell the site's support.",
} as const;

/** The keys of the tables. */
export type StringKey = keyof typeof en;
/** A complete table. */
export type Strings = Record<StringKey, string>;

/** The Chinese table. */
export const zh: Strings = {
  title: "询问 Loupe",
  open: "打开助手",
  close: "关闭",
  input: "你的问题",
  placeholder: "询问你的图片和视频…",
  send: "发送",
  stop: "停止",
  retry: "重试",
  attach: "添加图片",
  removeAttachment: "移除 {name}",
  limits: "最多 {max} 张图片，每张不超过 {size}。可在此粘贴或拖入截图。",
  you: "你",
  assistant: "Loupe",
  thinking: "正在检索资料…",
  answering: "正在回答…",
  answered: "回答完成。",
  stopped: "已停止。",
  copy: "复制回答",
  copied: "已复制。",
  feedbackUp: "有帮助",
  feedbackDown: "没有帮助",
  feedbackThanks: "感谢你的反馈。",
  correct: "纠正这个回答",
  correctionPrompt: "正确的回答是什么？",
  sendCorrection: "提交纠正",
  citation: "来源 {n}：{name}",
  viewer: "来源",
  searchLabel: "搜索资料库",
  searchPlaceholder: "输入文字搜索，或添加图片…",
  searchSubmit: "搜索",
  searchImage: "以图搜索",
  searchHint: "搜索结果显示在这里。选择一项即可询问它。",
  searchNone: "没有找到结果。",
  searchCount: "共 {n} 条结果。",
  askAbout: "询问 {name}",
  tellMeAbout: "介绍一下 [{name}]",
  dropHere: "拖放图片以添加",
  tooManyImages: "图片太多：每次对话最多 {max} 张。",
  tooLargeImage: "{name} 太大：图片最大 {size}。",
  notImage: "{name} 不是图片（JPEG、PNG、WebP 或 GIF）。",
  errorNotAllowed: "此网站无权使用该助手，或密钥无效。",
  errorTooMany: "短时间内提问太多。请稍等后重试。",
  errorTooLarge: "问题或图片太大，无法发送。请移除一张图片后重试。",
  errorOffline: "你似乎已离线，或无法连接到助手。联网后请重试。",
  errorBusy: "助手正忙或其存储不可用。请稍后重试。",
  errorInvalid: "助手无法读取这个问题：{message}",
  errorNotFound: "此处不可用。",
  errorOther: "出了点问题。请重试；如果再次发生，请联系网站支持。",
};

/** The languages the UI speaks. */
export type Language = "en" | "zh";

/** `override` (`data-lang`) when it names a language, else the browser's languages; English otherwise. */
export function pickLanguage(override: string | null | undefined, browser: readonly string[]): Language {
  for (const candidate of [override ?? "", ...browser]) {
    const tag = candidate.trim().toLowerCase();
    if (tag === "") continue;
    if (tag === "zh" || tag.startsWith("zh-")) return "zh";
    if (tag === "en" || tag.startsWith("en-")) return "en";
    // An override naming a language the UI lacks falls back to English rather than to the browser's.
    if (candidate === override) return "en";
  }
  return "en";
}

/** The table of `language`. */
export function stringsFor(language: Language): Strings {
  return language === "zh" ? zh : en;
}

/** Fills `{name}` placeholders of `template` from `values`; unknown ones are left as written. */
export function format(template: string, values: Record<string, string | number> = {}): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    Object.hasOwn(values, name) ? String(values[name]) : whole,
  );
}

/** Bytes as a person reads them: `900 B`, `20 MB`, `1.5 MB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  const mb = bytes / (1024 * 1024);
  return `${Number(mb.toFixed(1))} MB`;
}
