/**
 * Recommendations from behaviour: items like some and unlike others, users' events and the profiles
 * ranked from them ({@link RecommendService}), the event store port and its file adapter.
 */
export * from "./event-store.ts";
export * from "./file-event-store.ts";
export * from "./item-vectors.ts";
export * from "./mmr.ts";
export * from "./profile.ts";
export * from "./recommend-service.ts";
export * from "./region-query.ts";
export * from "./rocchio.ts";
