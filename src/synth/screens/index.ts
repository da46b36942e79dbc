/**
 * Screens World: seeded UI-like screenshots (dialogs, toasts, terminals, forms, tables, receipts) in
 * English and Chinese, with every line's text and box, the error code, the app, queries and chat cases.
 */
export type { CodeFamily, ScreenContent, ScreenFormat, ScreenKind, ScreenTheme } from "./content.ts";
export {
  CODE_FAMILIES,
  JPEG_QUALITIES,
  SCREEN_FORMATS,
  SCREEN_KINDS,
  SCREEN_SCALES,
  SCREEN_SIZES,
  SCREEN_THEMES,
  TEXT_PX_RANGE,
} from "./content.ts";
export type {
  PlannedScreen,
  ScreenSample,
  ScreensDatasetOptions,
  ScreensManifest,
  ScreensOptions,
  ScreenTruth,
} from "./dataset.ts";
export {
  generateScreens,
  planScreens,
  renderPlannedScreen,
  SCREENS_SPEC,
  screensCases,
  screensOptionsSchema,
  truthOf,
  writeScreensDataset,
} from "./dataset.ts";
export type { ScreenChatCase, ScreenChatType, ScreenFacts, ScreenQuery, ScreenQueryType } from "./queries.ts";
export { SCREEN_CHAT_TYPES, SCREEN_QUERY_TYPES, screenHasPhrase } from "./queries.ts";
export type { LineRole, LineScript, PaintedText, RenderedScreen, ScreenLine } from "./render.ts";
export { paintText, renderScreen, SCREEN_FONTS, ScreenCanvas, scriptOf } from "./render.ts";
export type { ScreenLanguage } from "./vocabulary.ts";
export { ERROR_TOPICS, SCREEN_LANGUAGES } from "./vocabulary.ts";
