/**
 * The one text table of the `loupe` commands (search results, model packs, pack eval reports): columns
 * as wide as their widest cell, two spaces apart, no trailing spaces.
 */

/**
 * The rows as aligned text lines, joined by newlines (no newline at the end): each cell padded to its
 * column's width, each line's trailing spaces trimmed.
 *
 * @example formatTable([["#", "id"], ["1", "img_a"]]) // "#  id\n1  img_a"
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const columns = Math.max(0, ...rows.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, column) =>
    Math.max(...rows.map((row) => row[column]?.length ?? 0)),
  );
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
