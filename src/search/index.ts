/**
 * The search layer: text/image search, recommendation, zero-shot classification and auto-tags
 * ({@link SearchService}), and reading the `image` field of requests.
 */
export { type ImageReference, parseImageReference } from "./image-input.ts";
export * from "./search-service.ts";
