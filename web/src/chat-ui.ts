/**
 * The conversation, wired onto the structure of `layout.ts` (made by the widget or served in the chat
 * page): sending with Enter (Shift-Enter for a new line), attachments by button, paste and drop with
 * previews and the limits checked before sending, the streamed answer shown as plain text as it
 * arrives, numbered citation chips with thumbnails, the viewer they open, stop, retry, copy, feedback,
 * and failures as sentences. Server text is only ever set with `textContent`: nothing is parsed as HTML.
 */
import type { ChatResult, Citation, HistoryTurn, LoupeClient } from "./client.ts";
import { RequestFailure } from "./client.ts";
import { describeFailure } from "./errors.ts";
import { format, type Strings } from "./i18n.ts";
import { attachmentProblem, type ChatLimits, describeLimits } from "./limits.ts";

/** The events the UI reports (the widget passes them on to `Loupe.on`). */
export interface ChatEvents {
  answer(result: ChatResult): void;
  error(failure: { sentence: string; status?: number; code?: string }): void;
}

/** Options of {@link mountChat}. */
export interface ChatUiOptions {
  root: ParentNode & Node;
  client: LoupeClient;
  strings: Strings;
  limits: ChatLimits;
  /** Extra fields of every chat request (`filter`, `kinds`, `topK` from `data-context`). */
  context?: Record<string, unknown>;
  emit: <K extends keyof ChatEvents>(event: K, ...args: Parameters<ChatEvents[K]>) => void;
}

/** The mounted conversation. */
export interface ChatUi {
  /** Asks `text` with `images`, as if typed; resolves with the final result. */
  ask(text: string, images?: Blob[]): Promise<ChatResult>;
  /** Attaches files (checked against the limits). */
  attach(files: Iterable<File | Blob>): Promise<void>;
  /** Puts text in the input and focuses it. */
  prefill(text: string): void;
  focus(): void;
  /** Whether a viewer dialog is open (Escape then closes it, not the panel). */
  viewerOpen(): boolean;
}

interface Attachment {
  dataUrl: string;
  previewUrl: string;
  name: string;
}

interface Turn {
  question: string;
  images: Attachment[];
  answer?: string;
  citations?: string[];
}

const ID_PATTERN = /\[((?:img|seg|tri|vid)_[0-9a-f]{6,64}|att_\d{1,3})\]/g;

/** Wires the conversation onto `root`. */
export function mountChat({ root, client, strings, limits, context = {}, emit }: ChatUiOptions): ChatUi {
  const doc = root.ownerDocument ?? (root as unknown as Document);
  const part = <T extends Element>(selector: string): T => {
    const found = root.querySelector<T>(selector);
    if (found === null) throw new Error(`Loupe UI: ${selector} is missing`);
    return found;
  };
  const messages = part<HTMLElement>('[data-part="messages"]');
  const status = part<HTMLElement>('[data-testid="status"]');
  const errorBox = part<HTMLElement>('[data-part="error"]');
  const errorText = part<HTMLElement>('[data-testid="error-message"]');
  const retryButton = part<HTMLButtonElement>('[data-testid="retry"]');
  const composer = part<HTMLFormElement>('[data-part="composer"]');
  const input = part<HTMLTextAreaElement>('[data-testid="input"]');
  const attachButton = part<HTMLButtonElement>('[data-testid="attach"]');
  const fileInput = part<HTMLInputElement>('[data-testid="file-input"]');
  const previews = part<HTMLElement>('[data-part="attachments"]');
  const problem = part<HTMLElement>('[data-part="problem"]');
  const stopButton = part<HTMLButtonElement>('[data-testid="stop"]');
  const sendButton = part<HTMLButtonElement>('[data-testid="send"]');
  part<HTMLElement>('[data-part="limits"]').textContent = describeLimits(limits, strings);

  const el = <K extends keyof HTMLElementTagNameMap>(
    tag: K,
    attrs: Record<string, string> = {},
    text?: string,
  ): HTMLElementTagNameMap[K] => {
    const element = doc.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
    if (text !== undefined) element.textContent = text;
    return element;
  };

  const turns: Turn[] = [];
  let pending: Attachment[] = [];
  let controller: AbortController | undefined;
  let lastAsk: { text: string; images: Attachment[] } | undefined;
  let viewer: HTMLDialogElement | undefined;

  const imagesInConversation = (): number =>
    turns.reduce((sum, turn) => sum + turn.images.length, 0) + pending.length;

  const showProblem = (sentence: string | null): void => {
    problem.hidden = sentence === null;
    problem.textContent = sentence ?? "";
  };

  const renderPreviews = (): void => {
    previews.replaceChildren(
      ...pending.map((attachment, index) => {
        const wrap = el("span", { class: "preview", "data-testid": "attachment-preview" });
        wrap.append(el("img", { src: attachment.previewUrl, alt: attachment.name }));
        const remove = el("button", {
          type: "button",
          "aria-label": format(strings.removeAttachment, { name: attachment.name }),
        });
        remove.textContent = "×";
        remove.addEventListener("click", () => {
          pending.splice(index, 1);
          renderPreviews();
          input.focus();
        });
        wrap.append(remove);
        return wrap;
      }),
    );
  };

  /** Attaches what passes the limits; returns the sentences of what did not. */
  const attach = async (files: Iterable<File | Blob>): Promise<string[]> => {
    showProblem(null);
    const problems: string[] = [];
    for (const file of files) {
      const name = file instanceof File ? file.name : "image";
      const sentence = attachmentProblem(
        { name, type: file.type, size: file.size },
        imagesInConversation(),
        limits,
        strings,
      );
      if (sentence !== null) {
        showProblem(sentence);
        problems.push(sentence);
        continue;
      }
      pending.push({ dataUrl: await readDataUrl(file), previewUrl: URL.createObjectURL(file), name });
    }
    renderPreviews();
    return problems;
  };

  /** Shows `text`; `spoken` is added for screen readers only (the answer, which is on screen already). */
  const setStatus = (text: string, spoken?: string): void => {
    status.textContent = text;
    if (spoken !== undefined) status.append(el("span", { class: "sr-only" }, ` ${spoken}`));
  };

  const showError = (failure: unknown): void => {
    const facts = failure instanceof RequestFailure ? failure.facts : { offline: true };
    const { sentence, retryable } = describeFailure(facts, strings);
    errorText.textContent = sentence;
    retryButton.hidden = !retryable;
    errorBox.hidden = false;
    setStatus(sentence);
    emit("error", {
      sentence,
      ...(facts.status === undefined ? {} : { status: facts.status }),
      ...(facts.code === undefined ? {} : { code: facts.code }),
    });
  };

  const busy = (on: boolean): void => {
    stopButton.hidden = !on;
    sendButton.disabled = on;
  };

  const userMessage = (text: string, images: Attachment[]): void => {
    const message = el("div", { class: "msg user", "data-testid": "message-user" });
    message.append(el("p", { class: "who" }, strings.you), el("p", { class: "answer" }, text));
    if (images.length > 0) {
      const thumbs = el("div", { class: "thumbs" });
      for (const image of images) thumbs.append(el("img", { src: image.previewUrl, alt: image.name }));
      message.append(thumbs);
    }
    messages.append(message);
  };

  const openViewer = async (citation: Citation, number: number, attachments: Attachment[]): Promise<void> => {
    viewer?.remove();
    const dialog = el("dialog", {
      class: "viewer",
      "data-testid": "viewer",
      "aria-label": format(strings.citation, { n: number, name: citation.id }),
    });
    viewer = dialog;
    const head = el("div", { class: "head" });
    const close = el("button", { type: "button", class: "icon", "aria-label": strings.close }, "×");
    head.append(el("h3", {}, format(strings.citation, { n: number, name: citation.id })), close);
    dialog.append(head);
    const revokers: Array<() => void> = [];
    const shut = (): void => {
      if (dialog.open) dialog.close();
    };
    close.addEventListener("click", shut);
    dialog.addEventListener("close", () => {
      for (const revoke of revokers) revoke();
      dialog.remove();
      if (viewer === dialog) viewer = undefined;
    });
    messages.parentElement?.append(dialog);
    dialog.showModal();
    close.focus();
    try {
      if (citation.kind === "triple") {
        const list = el("dl");
        list.append(el("dt", {}, "Q"), el("dd", {}, citation.question ?? ""));
        list.append(el("dt", {}, "A"), el("dd", {}, citation.answer ?? ""));
        dialog.append(list);
      }
      if (citation.kind === "video_segment" && citation.mediaUrl !== null) {
        const source = await client.mediaSource(citation.mediaUrl);
        revokers.push(source.revoke);
        const start = citation.start ?? 0;
        const video = el("video", { "data-testid": "viewer-video", controls: "", preload: "auto" });
        // Shown only once it stands at the segment's start, so nobody sees (or reads) second 0 first.
        await new Promise<void>((resolve, reject) => {
          video.addEventListener("error", () => reject(new RequestFailure({ status: 415 })), { once: true });
          video.addEventListener(
            "loadedmetadata",
            () => {
              if (Math.abs(video.currentTime - start) < 0.05) resolve();
              else {
                video.addEventListener("seeked", () => resolve(), { once: true });
                video.currentTime = start;
              }
            },
            { once: true },
          );
          video.src = `${source.url}#t=${start}`;
        });
        if (dialog.open) dialog.append(video);
      } else if (citation.kind !== "triple") {
        const local = attachments[Number(/^att_(\d+)$/.exec(citation.id)?.[1] ?? 0) - 1];
        const image = el("img", { "data-testid": "viewer-image", alt: citation.id });
        if (local !== undefined) image.src = local.previewUrl;
        else if (citation.mediaUrl !== null) {
          const source = await client.mediaSource(citation.mediaUrl);
          revokers.push(source.revoke);
          image.src = source.url;
        }
        if (dialog.open) dialog.append(image);
      }
    } catch (error) {
      if (dialog.open) {
        const facts = error instanceof RequestFailure ? error.facts : {};
        dialog.append(el("p", { role: "alert" }, describeFailure(facts, strings).sentence));
      }
    }
  };

  const chip = (citation: Citation, number: number, attachments: Attachment[]): HTMLElement => {
    const button = el("button", {
      type: "button",
      class: "chip",
      "data-testid": "citation-chip",
      "data-id": citation.id,
      "data-kind": citation.kind,
    });
    const thumb = el("img", { "data-testid": "citation-thumb", alt: "" });
    const local = attachments[Number(/^att_(\d+)$/.exec(citation.id)?.[1] ?? 0) - 1];
    if (local !== undefined) {
      thumb.src = local.previewUrl;
      button.append(thumb);
    } else if (citation.thumbnailUrl !== null) {
      button.append(thumb);
      client.mediaSource(citation.thumbnailUrl).then(
        (source) => {
          thumb.src = source.url;
        },
        () => thumb.remove(),
      );
    }
    // The name read out is the visible text with "Source" before it (no aria-label that hides the id).
    button.append(el("span", { class: "sr-only" }, `${strings.viewer} `));
    button.append(el("span", { class: "n" }, String(number)));
    button.append(el("span", { class: "label" }, citation.id));
    button.addEventListener("click", () => void openViewer(citation, number, attachments));
    return button;
  };

  const feedbackActions = (turn: Turn, result: ChatResult, answerText: string): HTMLElement => {
    const actions = el("div", { class: "actions" });
    const copy = el("button", { type: "button", "data-testid": "copy" }, strings.copy);
    copy.addEventListener("click", () => {
      navigator.clipboard?.writeText(answerText).then(
        () => setStatus(strings.copied),
        () => undefined,
      );
    });
    const post = async (rating: "up" | "down", correction?: string): Promise<void> => {
      try {
        const recorded = await client.feedback({
          rating,
          question: turn.question,
          answer: result.answer,
          citations: result.citations.map((citation) => citation.id),
          ...(correction === undefined ? {} : { correction }),
          ...(turn.images[0] === undefined ? {} : { image: turn.images[0].dataUrl }),
        });
        if (recorded) setStatus(strings.feedbackThanks);
      } catch {
        // Feedback is optional: a failure to record it leaves the conversation as it is.
      }
    };
    const up = el("button", { type: "button", "data-testid": "feedback-up", "aria-pressed": "false" });
    up.textContent = strings.feedbackUp;
    const down = el("button", { type: "button", "data-testid": "feedback-down", "aria-pressed": "false" });
    down.textContent = strings.feedbackDown;
    for (const [button, rating] of [
      [up, "up"],
      [down, "down"],
    ] as const) {
      button.addEventListener("click", () => {
        up.setAttribute("aria-pressed", String(rating === "up"));
        down.setAttribute("aria-pressed", String(rating === "down"));
        void post(rating);
      });
    }
    actions.append(copy, up, down);
    if (turn.images.length > 0) {
      const correct = el("button", { type: "button", "data-testid": "correct" }, strings.correct);
      correct.addEventListener("click", () => {
        if (actions.nextElementSibling?.classList.contains("correction")) return;
        const form = el("form", { class: "correction" });
        const field = el("textarea", {
          rows: "2",
          maxlength: "2000",
          "aria-label": strings.correctionPrompt,
        });
        field.setAttribute("placeholder", strings.correctionPrompt);
        const submit = el("button", { type: "submit", class: "primary" }, strings.sendCorrection);
        form.append(field, submit);
        form.addEventListener("submit", (event) => {
          event.preventDefault();
          const text = field.value.trim();
          if (text === "") return;
          void post("down", text).then(() => form.remove());
        });
        actions.after(form);
        field.focus();
      });
      actions.append(correct);
    }
    return actions;
  };

  const history = (): HistoryTurn[] =>
    turns
      .filter((turn) => turn.answer !== undefined)
      .slice(-Math.floor(limits.maxTurns / 2))
      .flatMap((turn): HistoryTurn[] => [
        {
          role: "user",
          content: turn.question,
          ...(turn.images.length === 0 ? {} : { images: turn.images.map((image) => image.dataUrl) }),
        },
        { role: "assistant", content: turn.answer ?? "", citations: turn.citations ?? [] },
      ]);

  const run = async (text: string, images: Attachment[]): Promise<ChatResult> => {
    controller?.abort();
    const abort = new AbortController();
    controller = abort;
    lastAsk = { text, images };
    errorBox.hidden = true;
    showProblem(null);
    const previous = history();
    const turn: Turn = { question: text, images };
    userMessage(text, images);
    const message = el("article", {
      class: "msg assistant",
      "data-testid": "message-assistant",
      "aria-busy": "true",
    });
    const answer = el("p", { class: "answer", "data-testid": "answer-text" });
    const chips = el("div", { class: "chips" });
    message.append(el("p", { class: "who" }, strings.assistant), answer, chips);
    messages.append(message);
    messages.scrollTop = messages.scrollHeight;
    busy(true);
    setStatus(strings.thinking);
    const numbers = new Map<string, number>();
    let raw = "";
    const show = (): void => {
      // `[id]` marks become the chips' numbers; the text stays text.
      answer.textContent = raw.replace(ID_PATTERN, (whole, id: string) => {
        const number = numbers.get(id);
        return number === undefined ? whole : `[${number}]`;
      });
      messages.scrollTop = messages.scrollHeight;
    };
    const addCitation = (citation: Citation): void => {
      if (numbers.has(citation.id)) return;
      numbers.set(citation.id, numbers.size + 1);
      chips.append(chip(citation, numbers.size, images));
    };
    try {
      const result = await client.chat(
        {
          ...context,
          question: text,
          ...(images.length === 0 ? {} : { images: images.map((image) => image.dataUrl) }),
          ...(previous.length === 0 ? {} : { history: previous }),
        },
        {
          onCitation: addCitation,
          onDelta(delta) {
            if (raw === "") setStatus(strings.answering);
            raw += delta;
            show();
          },
          onReset() {
            raw = "";
            show();
          },
        },
        abort.signal,
      );
      for (const citation of result.citations ?? []) addCitation(citation);
      raw = result.answer;
      show();
      turn.answer = result.answer;
      turn.citations = (result.citations ?? []).map((citation) => citation.id);
      turns.push(turn);
      message.append(feedbackActions(turn, result, answer.textContent ?? ""));
      setStatus(strings.answered, (answer.textContent ?? "").slice(0, 500));
      lastAsk = undefined;
      emit("answer", result);
      return result;
    } catch (error) {
      if (abort.signal.aborted) {
        setStatus(strings.stopped);
        errorText.textContent = strings.stopped;
        retryButton.hidden = false;
        errorBox.hidden = false;
      } else showError(error);
      if (raw === "") message.remove();
      throw error;
    } finally {
      message.setAttribute("aria-busy", "false");
      if (controller === abort) {
        controller = undefined;
        busy(false);
      }
    }
  };

  const submit = (): void => {
    const text = input.value.trim();
    if (text === "" || controller !== undefined) return;
    const images = pending;
    pending = [];
    renderPreviews();
    input.value = "";
    run(text, images).catch(() => undefined);
  };

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])].filter((file) => file.type.startsWith("image/"));
    if (files.length === 0) return;
    event.preventDefault();
    void attach(files);
  });
  attachButton.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    void attach([...(fileInput.files ?? [])]).then(() => {
      fileInput.value = "";
    });
  });
  composer.addEventListener("dragover", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    composer.classList.add("dragging");
  });
  composer.addEventListener("dragleave", () => composer.classList.remove("dragging"));
  composer.addEventListener("drop", (event) => {
    composer.classList.remove("dragging");
    const files = [...(event.dataTransfer?.files ?? [])];
    if (files.length === 0) return;
    event.preventDefault();
    void attach(files);
  });
  stopButton.addEventListener("click", () => {
    controller?.abort();
    input.focus();
  });
  retryButton.addEventListener("click", () => {
    if (lastAsk === undefined || controller !== undefined) return;
    const { text, images } = lastAsk;
    // The failed turn's question is asked again; its message stays in the log above.
    run(text, images).catch(() => undefined);
  });

  return {
    async ask(text, images = []) {
      pending = [];
      const problems = await attach(images);
      const attached = pending;
      pending = [];
      renderPreviews();
      // An image the limits refuse fails the call, with the sentence shown, rather than being dropped.
      if (problems.length > 0) throw new Error(problems.join(" "));
      return run(text, attached);
    },
    async attach(files) {
      await attach(files);
    },
    prefill(text) {
      input.value = text;
      input.focus();
    },
    focus: () => input.focus(),
    viewerOpen: () => viewer?.open === true,
  };
}

/** A file's bytes as a data URL, as `/v1/chat` takes images in JSON. */
function readDataUrl(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
