/**
 * The sources of a chat answer as OpenAI clients and chat UIs show them: each cited stored item as an
 * OpenAI `url_citation` annotation (an absolute link to its media, for a video segment the video at the
 * segment's start, and a title), and optionally a "Sources" list appended to the answer text for UIs
 * that show no annotations. Attached images (`att_n`) get neither: they were never stored, so there is
 * nothing to link, and the user already has them.
 *
 * Links are absolute: `LOUPE_PUBLIC_URL` when set, else the request's scheme and `Host` (which the host
 * check has already vetted; forwarded headers are never trusted). While API keys are on, a browser that
 * follows a link sends no key, so links are signed for the caller's key and expire
 * (`auth/media-link-signer.ts`); without keys, media needs no key and links are plain.
 */
import { z } from "@hono/zod-openapi";
import { type MediaLinkSigner, SIGNED_LINK_PARAMS } from "../auth/media-link-signer.ts";
import type { Citation, CitationKind } from "../rag/types.ts";
import { requestHost } from "./auth/request-host.ts";
import type { AppContext } from "./context.ts";

/** How sources are shown: annotations only, or also a Sources list in the answer text. */
export type SourcesMode = "annotations" | "markdown";

/** An OpenAI `url_citation` annotation, as on `choices[0].message.annotations`. */
export const urlCitationSchema = z
  .object({
    type: z.literal("url_citation"),
    url_citation: z.object({
      url: z
        .string()
        .describe(
          "Absolute link to the cited item's media (a video segment: the video, with a `#t=start,end` fragment). Signed and short-lived while API keys are on, so a browser opens it without the key.",
        ),
      title: z.string().describe("The item's kind and id (and a segment's times)."),
      start_index: z
        .number()
        .int()
        .describe("Where the citation's `[id]` mark starts in the message text, in Unicode code points."),
      end_index: z.number().int().describe("Where the mark ends (exclusive), in Unicode code points."),
    }),
  })
  .meta({ id: "UrlCitationAnnotation" });

/** One `url_citation` annotation. */
export type UrlCitation = z.infer<typeof urlCitationSchema>;

/** A cited stored item with its absolute link and title. */
export interface CitedSource {
  id: string;
  url: string;
  title: string;
}

/** The heading that starts the Sources list; earlier assistant turns are cut there (see {@link stripSourcesList}). */
export const SOURCES_HEADING = "**Sources**";

const KIND_LABELS: Record<CitationKind, string> = {
  image: "Image",
  video_segment: "Video segment",
  triple: "Triple",
  region: "Object",
};

/** `m:ss` (or `h:mm:ss`) of a time in seconds. */
function clock(seconds: number): string {
  const whole = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

/** A number of seconds as a media fragment writes it: at most 3 decimals, no trailing zeros. */
function fragmentSeconds(seconds: number): string {
  return String(Math.round(Math.max(0, seconds) * 1000) / 1000);
}

/**
 * A source's title, made from the item's kind, id and times only: a stored caption or triple question
 * came from whoever ingested the item, and in a chat UI's source list it could pose as a link or an
 * instruction.
 */
export function sourceTitle(citation: Citation): string {
  const base = `${KIND_LABELS[citation.kind]} ${citation.id}`;
  if (citation.kind === "video_segment" && citation.start !== null) {
    return `${base}, ${clock(citation.start)}–${clock(citation.end ?? citation.start)}`;
  }
  return base;
}

/**
 * Turns a media path that citations carry (`/v1/media/{id}`) into the absolute link for this request's
 * caller: under `publicUrl` or the request's own origin, signed for the caller's key when it has one.
 */
export function mediaLinker({
  c,
  publicUrl,
  signer,
}: {
  c: AppContext;
  publicUrl: string | undefined;
  signer: MediaLinkSigner | undefined;
}): (path: string) => Promise<string> {
  const base = publicUrl ?? `${new URL(c.req.url).protocol}//${requestHost(c)}`;
  // Without keys (keyId null) media needs none, so a plain link opens; with keys, a browser sends none.
  const keyId = c.get("principal")?.keyId ?? null;
  // The signature covers the path Loupe itself receives: a proxy serving Loupe under LOUPE_PUBLIC_URL's
  // path prefix strips the prefix before passing the request on.
  return async (path) => {
    if (keyId === null || signer === undefined) return `${base}${path}`;
    const signed = await signer.sign({ path, keyId });
    const query = new URLSearchParams({
      [SIGNED_LINK_PARAMS.expires]: String(signed.expires),
      [SIGNED_LINK_PARAMS.keyId]: signed.keyId,
      [SIGNED_LINK_PARAMS.signature]: signed.signature,
    });
    return `${base}${path}?${query}`;
  };
}

/** The sources of an answer: its citations that have stored media, in citation order. */
export async function citedSources({
  citations,
  link,
}: {
  citations: readonly Citation[];
  link: (path: string) => Promise<string>;
}): Promise<CitedSource[]> {
  const sources: CitedSource[] = [];
  for (const citation of citations) {
    if (citation.mediaUrl === null) continue;
    let url = await link(citation.mediaUrl);
    if (citation.kind === "video_segment" && citation.start !== null) {
      const end = citation.end === null ? "" : `,${fragmentSeconds(citation.end)}`;
      url += `#t=${fragmentSeconds(citation.start)}${end}`;
    }
    sources.push({ id: citation.id, url, title: sourceTitle(citation) });
  }
  return sources;
}

/** Escapes what would end a markdown link's text. */
function markdownText(text: string): string {
  return text.replace(/[\\[\]()*`<>]/g, (character) => `\\${character}`);
}

/** The Sources list appended to an answer (empty when nothing has a link). */
export function sourcesList(sources: readonly CitedSource[]): string {
  if (sources.length === 0) return "";
  const lines = sources.map(
    (source, index) => `${index + 1}. [${markdownText(source.title)}](${source.url})`,
  );
  return `\n\n${SOURCES_HEADING}\n\n${lines.join("\n")}`;
}

const SOURCES_LINE = /^\d{1,3}\. \[[^\n]*\]\(https?:\/\/[^\s)]+\)$/;

/**
 * An earlier assistant message without the Sources list Loupe appended to it: chat UIs send the whole
 * message back as history, and its links (signed, expiring) mean nothing to the next turn.
 */
export function stripSourcesList(text: string): string {
  const start = text.lastIndexOf(`\n\n${SOURCES_HEADING}\n\n`);
  if (start === -1) return text;
  const lines = text.slice(start + SOURCES_HEADING.length + 4).split("\n");
  return lines.every((line) => SOURCES_LINE.test(line)) ? text.slice(0, start) : text;
}

/** Length in Unicode code points of `text` up to UTF-16 offset `offset`. */
function codePoints(text: string, offset: number): number {
  let count = 0;
  for (let index = 0; index < offset; index += 1) {
    const unit = text.charCodeAt(index);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && index + 1 < offset) {
      const next = text.charCodeAt(index + 1);
      if (next >= 0xdc00 && next <= 0xdfff) index += 1;
    }
    count += 1;
  }
  return count;
}

/**
 * The `url_citation` annotations of `content`, one per source: each spans the source's first `[id]`
 * mark at or after `from` (where the final answer starts in a stream that restarted), else its line in
 * the Sources list, else is empty at the end of the text.
 */
export function urlCitations({
  content,
  sources,
  from = 0,
}: {
  content: string;
  sources: readonly CitedSource[];
  from?: number;
}): UrlCitation[] {
  const listStart = content.lastIndexOf(`\n\n${SOURCES_HEADING}\n\n`);
  return sources.map((source, index) => {
    const mark = `[${source.id}]`;
    let start = content.indexOf(mark, from);
    let end = start + mark.length;
    if (start === -1 || (listStart !== -1 && start > listStart)) {
      const line = listStart === -1 ? -1 : content.indexOf(`\n${index + 1}. [`, listStart);
      if (line === -1) {
        start = content.length;
        end = content.length;
      } else {
        start = line + 1;
        const lineEnd = content.indexOf("\n", start);
        end = lineEnd === -1 ? content.length : lineEnd;
      }
    }
    return {
      type: "url_citation" as const,
      url_citation: {
        url: source.url,
        title: source.title,
        start_index: codePoints(content, start),
        end_index: codePoints(content, end),
      },
    };
  });
}
