/**
 * The URLs under which `GET /v1/media/{id}` (and its thumbnail variant) serve an item's media. Search
 * results and chat citations carry them; the composition root hands this builder to those layers so
 * that they never spell out a route themselves.
 */
import type { MediaUrls } from "../media/media-port.ts";

/** Paths relative to the server's origin: `/v1/media/{id}` and `/v1/media/{id}/thumbnail`. */
export const mediaRouteUrls: MediaUrls = {
  media: (id) => `/v1/media/${encodeURIComponent(id)}`,
  thumbnail: (id) => `/v1/media/${encodeURIComponent(id)}/thumbnail`,
};
