/**
 * Output size of Hugging Face's `get_resize_output_image_size` for a `shortest_edge` request with
 * `default_to_square=False`: the short side becomes `shortestEdge`, the long side keeps the aspect ratio,
 * truncated to an integer. The image processor resizes images by it and frame sampling resizes video
 * frames by it, so stills and frames reach the model with the same geometry.
 */
export function shortEdgeSize({
  width,
  height,
  shortestEdge,
}: {
  width: number;
  height: number;
  shortestEdge: number;
}): { width: number; height: number } {
  if (width <= height) return { width: shortestEdge, height: Math.trunc((shortestEdge * height) / width) };
  return { width: Math.trunc((shortestEdge * width) / height), height: shortestEdge };
}
