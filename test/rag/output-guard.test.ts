/**
 * The answer neutralizer: each rule, Loupe's own media URLs kept, ordinary answers untouched,
 * idempotence, and the streaming guard giving exactly the whole text's result however it is split.
 */
import { describe, expect, it } from "vitest";
import { AnswerGuard, neutralize, ownMediaUrlTest } from "../../src/rag/output-guard.ts";
import { expectInert, INJECTION, isOwnUrl } from "../security/answers-inert.ts";

const guarded = (text: string) => neutralize(text, { isOwnUrl });

const HOSTILE = [
  INJECTION,
  "![a](https://evil.example/a.png)",
  '![a](<https://evil.example/a b.png> "title")',
  "[![badge](https://evil.example/b.svg)](https://evil.example/c)",
  "[ [click](//evil.example/x)",
  "![ref][r]\n\n[r]: https://evil.example/r.png",
  "   [r]: //evil.example/r\n[go][r]",
  "<https://evil.example/auto> and https://evil.example/bare and www.evil.example/w",
  "<a href=x>x</a> <!-- c --> <?php ?> </script>",
  "[x](java&#115;cript:alert(1)) &#104;ttps://evil.example &lt;img&gt;",
  "JavaScript:alert(1) vbscript:x data:text/html;base64,AAAA mailto:a@evil.example",
  "javascript:(alert)(1) and data:(x)",
  "[[a]]()(https://evil.example/z)",
  "![[a](https://evil.example/y)",
  "[t](https://evil.example/ 'q') [t2](https://evil.example/ (q))",
  "text [unclosed link to](https://evil.example/but never closed",
  "! [spaced](https://evil.example/s) !\n[x]\n(https://evil.example/n)",
];

describe("neutralize", () => {
  it("makes the issue's injection inert and says where the links went", () => {
    const out = guarded(INJECTION);
    expect(out).toBe(
      "x (https[:]//evil.example/leak?d=1) ‹img src=https[:]//evil.example/p.gif onerror=alert(1)> click (javascript[:]alert(1))",
    );
    expectInert(out);
  });

  it.each(HOSTILE)("leaves nothing live in %j", (text) => {
    expectInert(guarded(text));
  });

  it("keeps links to Loupe's own media and turns own images into links", () => {
    expect(guarded("See [the circle](/v1/media/img_0123abcd) [img_0123abcd].")).toBe(
      "See [the circle](/v1/media/img_0123abcd) [img_0123abcd].",
    );
    expect(guarded("![thumb](/v1/media/img_0123abcd/thumbnail)")).toBe(
      "[thumb](/v1/media/img_0123abcd/thumbnail)",
    );
    // A query, another path or another host is not Loupe's media URL.
    expect(
      guarded("[a](/v1/media/img_1?x=1) [b](/v1/search) [c](https://loupe.example/v1/media/img_1)"),
    ).toBe("a (/v1/media/img_1?x=1) b (/v1/search) c (https[:]//loupe.example/v1/media/img_1)");
  });

  it("keeps absolute own URLs when the media URLs are absolute", () => {
    const absolute = ownMediaUrlTest({
      media: (id) => `https://loupe.example/v1/media/${id}`,
      thumbnail: (id) => `https://loupe.example/v1/media/${id}/thumbnail`,
    });
    expect(
      neutralize("[a](https://loupe.example/v1/media/img_1) https://loupe.example/v1/media/img_1.", {
        isOwnUrl: absolute,
      }),
    ).toBe("[a](https://loupe.example/v1/media/img_1) https://loupe.example/v1/media/img_1.");
  });

  it("breaks e-mail autolinks and entity-encoded schemes", () => {
    expect(guarded("write to a@evil.example or &#104;ttps://evil.example")).toBe(
      "write to a[@]evil.example or ＆#104;ttps[:]//evil.example",
    );
  });

  it("escapes reference definitions at line starts only", () => {
    expect(guarded("[r]: https://evil.example\n  [s]: x\nsee [r]: no")).toBe(
      "\\[r]: https[:]//evil.example\n  \\[s]: x\nsee [r]: no",
    );
  });

  it("leaves ordinary answers as they are", () => {
    const ordinary = [
      "The circle is red [img_3f2a9c1d0e7b4a5f6c8d9e0a1b2c3d4e].",
      "There are probably 3 squares [att_1] [tri_0a1b2c] (a stored answer for this image).",
      "No: none of the 5 closest images shows everything asked for (red circle, blue star); the best match, [img_ab12], fits with 42% probability.",
      "The red square is moving left from 1.5 s to 3 s of video vid_0123 [seg_0123_1500_3000].",
      'The corpus does not answer this question: nothing stored is close enough to "what is 2 < 3? and a>b".',
      "Yes! The star is blue [att_1].\n\nCorrection: [att_1] shows a green star (97%).",
      "Metadata: none. Data: 5 items. Mail me: never. Ratio 3:2, 10:30 am.",
    ];
    for (const text of ordinary) expect(guarded(text)).toBe(text);
  });

  it("is idempotent", () => {
    for (const text of HOSTILE) {
      const once = guarded(text);
      expect(guarded(once)).toBe(once);
    }
  });
});

describe("AnswerGuard", () => {
  const stream = (deltas: readonly string[]) => {
    const guard = new AnswerGuard({ isOwnUrl });
    return deltas.map((delta) => guard.push(delta)).join("") + guard.flush();
  };

  it("gives the whole text's result for every split into two deltas", () => {
    for (const text of [...HOSTILE, "See [the circle](/v1/media/img_1) and ![x](https://e.example/)."]) {
      const whole = guarded(text);
      for (let at = 0; at <= text.length; at += 1) {
        expect(stream([text.slice(0, at), text.slice(at)]), `split at ${at} of ${JSON.stringify(text)}`).toBe(
          whole,
        );
      }
    }
  });

  it("gives the whole text's result one character at a time", () => {
    for (const text of HOSTILE) expect(stream([...text])).toBe(guarded(text));
  });

  it("passes text on as it comes when nothing is open", () => {
    const guard = new AnswerGuard({ isOwnUrl });
    expect(guard.push("The circle is red ")).toBe("The circle is red ");
    expect(guard.push("[img_1]. It")).toBe("[img_1]. ");
    expect(guard.push(" is ![")).toBe("It is ");
    expect(guard.push("x](https://evil.example/) big.")).toBe("x (https[:]//evil.example/) ");
    expect(guard.flush()).toBe("big.");
  });

  it("holds an unclosed bracket until the paragraph ends", () => {
    const guard = new AnswerGuard({ isOwnUrl });
    expect(guard.push("Look [here and there ")).toBe("Look ");
    expect(guard.push("more words\n\nNext ")).toBe("[here and there more words\n\nNext ");
  });

  it("keeps the result of random splits of random hostile text equal to the whole's, and inert", () => {
    const tokens = [
      "!",
      "[",
      "]",
      "(",
      ")",
      "<",
      ">",
      " ",
      "\n",
      "\n\n",
      ":",
      "//",
      "https",
      "javascript",
      "data",
      "www.",
      "evil.example",
      "x",
      "img",
      "&#104;",
      "\\",
      '"',
      "'",
      "/v1/media/img_1",
      "   ",
    ];
    let seed = 7;
    const random = (below: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % below;
    };
    for (let round = 0; round < 400; round += 1) {
      let text = "";
      const length = 5 + random(40);
      for (let index = 0; index < length; index += 1) text += tokens[random(tokens.length)];
      const deltas: string[] = [];
      for (let at = 0; at < text.length; ) {
        const size = 1 + random(6);
        deltas.push(text.slice(at, at + size));
        at += size;
      }
      const whole = guarded(text);
      expect(stream(deltas), JSON.stringify(text)).toBe(whole);
      expect(guarded(whole), JSON.stringify(text)).toBe(whole);
      expectInert(whole, { links: false });
    }
  });
});
