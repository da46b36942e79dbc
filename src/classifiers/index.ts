/** Few-shot classifiers: the fitting maths, the store port and its file adapter, and the service. */
export * from "./classifier.ts";
export * from "./classifier-service.ts";
export * from "./classifier-store.ts";
export * from "./fitting.ts";
