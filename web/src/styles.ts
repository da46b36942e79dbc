/**
 * The UI's stylesheet. It is applied as a constructed stylesheet (`adoptedStyleSheets`), never as a
 * `<style>` element or a `style` attribute, so a host page's CSP needs no `style-src 'unsafe-inline'`:
 * CSSOM stylesheets are not subject to `style-src`. Colours follow `prefers-color-scheme` unless the root
 * carries `data-theme="light"` or `"dark"`.
 */

const light = `--bg:#ffffff;--fg:#1b1f24;--muted:#57606a;--line:#c9d1d9;--soft:#f3f5f8;--user:#e8f0fe;
--accent:#0b57d0;--on-accent:#ffffff;--danger:#a40e26;--focus:#0b57d0;--shadow:0 8px 28px rgba(0,0,0,.22);`;
const dark = `--bg:#15181d;--fg:#e6e8eb;--muted:#a7b0bb;--line:#3a424d;--soft:#20252c;--user:#1d2b44;
--accent:#8ab4f8;--on-accent:#0b1020;--danger:#ff9aa8;--focus:#8ab4f8;--shadow:0 8px 28px rgba(0,0,0,.6);`;

/** The stylesheet, its theme variables set on `scope` (`:host` for the widget, `:root` for the page). */
export function stylesheet(scope: ":host" | ":root"): string {
  const themed = (theme: string): string =>
    scope === ":host" ? `:host([data-theme="${theme}"])` : `:root[data-theme="${theme}"]`;
  return `
${scope}{${light}color-scheme:light}
@media (prefers-color-scheme: dark){${scope}{${dark}color-scheme:dark}}
${themed("light")}{${light}color-scheme:light}
${themed("dark")}{${dark}color-scheme:dark}
:host{all:initial}
${scope === ":root" ? "body{margin:0;background:var(--bg)}" : ""}
.loupe{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"PingFang SC","Microsoft YaHei",sans-serif;
color:var(--fg);box-sizing:border-box;text-align:start}
.loupe *,.loupe *::before,.loupe *::after{box-sizing:border-box}
.loupe [hidden]{display:none!important}
.loupe button,.loupe input,.loupe textarea{font:inherit;color:inherit}
.loupe button{cursor:pointer;border-radius:8px;border:1px solid var(--line);background:var(--soft);
padding:6px 12px;min-height:36px;min-width:36px;white-space:nowrap}
.loupe button.primary{background:var(--accent);color:var(--on-accent);border-color:var(--accent);font-weight:600}
.loupe button.icon{padding:0;width:36px;font-size:20px;line-height:1}
.loupe button:disabled{opacity:.55;cursor:not-allowed}
.loupe :focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.loupe .sr-only{position:absolute!important;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;
clip:rect(0 0 0 0);white-space:nowrap;border:0}
.chat{display:flex;flex-direction:column;min-height:0;flex:1;gap:6px}
.messages{flex:1;min-height:120px;overflow-y:auto;padding:8px;display:flex;flex-direction:column;gap:10px}
.msg{max-width:100%;padding:8px 10px;border-radius:10px;overflow-wrap:anywhere}
.msg.user{align-self:flex-end;background:var(--user);max-width:88%}
.msg.assistant{align-self:stretch;background:var(--soft);border:1px solid var(--line)}
.msg .who{font-size:12px;color:var(--muted);margin:0 0 2px;font-weight:600}
.answer{white-space:pre-wrap;margin:0}
.thumbs,.chips,.actions,.attachments{display:flex;flex-wrap:wrap;gap:6px}
.thumbs img{width:56px;height:56px;object-fit:cover;border-radius:6px;border:1px solid var(--line)}
.chips{margin-top:8px}
.chip{display:inline-flex;align-items:center;gap:6px;padding:3px 8px 3px 3px;border-radius:18px;max-width:100%;
background:var(--bg)}
.chip img{width:32px;height:32px;object-fit:cover;border-radius:14px;background:var(--line)}
.chip .n{font-weight:700}
.chip .label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;max-width:11em;font-size:13px}
.actions{margin-top:8px}
.actions button{min-height:32px;font-size:13px}
.correction{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}
.correction textarea{flex:1 1 180px;min-width:0}
.status{font-size:13px;color:var(--muted);min-height:1.2em;padding:0 8px}
.error{display:flex;flex-wrap:wrap;gap:8px;align-items:center;padding:8px;margin:0 8px;border-radius:8px;
border:1px solid var(--danger)}
.error p,.problem{margin:0;color:var(--danger);flex:1 1 160px}
.problem{padding:0 2px;font-size:13px}
.composer{display:flex;flex-direction:column;gap:6px;padding:8px;border-top:1px solid var(--line)}
.composer textarea,.search input[type=search]{width:100%;min-width:0;resize:vertical;border:1px solid var(--line);
border-radius:8px;padding:8px;background:var(--bg);color:var(--fg)}
.composer.dragging{outline:3px dashed var(--accent);outline-offset:-3px}
.row{display:flex;gap:6px;align-items:center;flex-wrap:wrap}
.limits{flex:1 1 120px;margin:0;font-size:12px;color:var(--muted);min-width:0}
.preview{position:relative;display:inline-flex}
.preview img{width:56px;height:56px;object-fit:cover;border-radius:6px;border:1px solid var(--line)}
.preview button{position:absolute;top:-8px;right:-8px;min-height:24px;min-width:24px;width:24px;height:24px;
padding:0;border-radius:12px;font-size:14px;line-height:1}
.viewer{border:1px solid var(--line);border-radius:12px;padding:12px;background:var(--bg);color:var(--fg);
max-width:min(92vw,900px);max-height:90vh;overflow:auto}
.viewer::backdrop{background:rgba(0,0,0,.6)}
.viewer img,.viewer video{display:block;max-width:100%;max-height:70vh;margin:8px 0}
.viewer .head{display:flex;justify-content:space-between;align-items:center;gap:8px}
.viewer h3{margin:0;font-size:15px;overflow-wrap:anywhere}
.viewer dl{margin:8px 0}.viewer dt{font-weight:700}.viewer dd{margin:0 0 8px;white-space:pre-wrap}
.widget .launcher{position:fixed;right:16px;bottom:16px;z-index:2147483646;width:56px;height:56px;
border-radius:28px;background:var(--accent);color:var(--on-accent);border:0;font-size:26px;font-weight:700;
box-shadow:var(--shadow)}
.widget .panel{position:fixed;right:8px;bottom:80px;z-index:2147483647;display:flex;flex-direction:column;
width:min(400px,calc(100vw - 16px));height:min(620px,calc(100vh - 96px));background:var(--bg);color:var(--fg);
border:1px solid var(--line);border-radius:12px;box-shadow:var(--shadow);overflow:hidden}
.panel-head{display:flex;align-items:center;justify-content:space-between;gap:8px;padding:8px 8px 8px 14px;
border-bottom:1px solid var(--line)}
.panel-head h2{margin:0;font-size:16px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.page{min-height:100vh;display:flex;flex-direction:column;background:var(--bg)}
.top{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;padding:10px 16px;border-bottom:1px solid var(--line)}
.top h1{margin:0;font-size:20px}
.search{display:flex;gap:6px;flex:1 1 260px;min-width:0}
.columns{flex:1;display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.4fr);gap:12px;padding:12px;min-height:0}
@media (max-width:760px){.columns{grid-template-columns:minmax(0,1fr);padding:6px}}
.conversation{display:flex;flex-direction:column;min-height:70vh;border:1px solid var(--line);border-radius:12px}
.results-status{margin:0 0 8px;color:var(--muted);font-size:13px}
.grid{list-style:none;margin:0;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:8px}
.grid button{width:100%;display:flex;flex-direction:column;align-items:stretch;gap:4px;padding:4px;text-align:start}
.grid img{width:100%;aspect-ratio:1;object-fit:cover;border-radius:6px;background:var(--line)}
.grid .meta{font-size:12px;color:var(--fg);display:flex;justify-content:space-between;gap:4px;flex-wrap:wrap}
`;
}

/** A constructed stylesheet of {@link stylesheet}; `replaceSync` needs no `unsafe-inline`. */
export function constructedSheet(scope: ":host" | ":root"): CSSStyleSheet {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(stylesheet(scope));
  return sheet;
}
