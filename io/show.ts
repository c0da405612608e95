/**
 * Text that came from outside (a checkpoint's tensor names, a header, a config.json, a prompts
 * file, a server's headers, the command line) on its way into a message for the terminal.
 *
 * A terminal acts on some characters instead of showing them: ESC starts a sequence that can
 * clear the screen or set the window title, the C1 control U+009B does the same in one
 * character, bidirectional overrides make text read in another order than it is stored. And a
 * damaged file can hold a string of megabytes. So everything of that kind goes through here:
 * controls become visible escapes (`\x1b`, `\u202e`), and long text is cut with a note of how
 * much was left out. One helper for every message, so no message forgets it.
 */

/**
 * Characters shown as escapes: C0 controls, DEL and C1 controls, the bidirectional marks,
 * embeddings, overrides and isolates, the line and paragraph separators, and lone surrogates
 * (half of a UTF-16 pair, which no terminal can show).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\p{Surrogate}/gu;

/** Every character a terminal would act on, as a visible escape; everything else unchanged. */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Characters of file content shown in a message before it is cut. */
const SHOWN_MAX = 120;

/** `text` cut after `max` characters (never inside a surrogate pair), and how many were cut off. */
function cut(text: string, max: number): [string, number] {
  if (text.length <= max) return [text, 0];
  const at = /[\ud800-\udbff]/.test(text[max - 1]) ? max - 1 : max; // keep a pair together
  return [text.slice(0, at), text.length - at];
}

const more = (n: number) => (n > 0 ? `… (${n} more characters)` : '');

/** `text` safe for the terminal: cut after `max` characters, with "… (N more characters)" saying so, and with controls escaped. */
export function shown(text: string, max = SHOWN_MAX): string {
  const [head, rest] = cut(text, max);
  return escapeControls(head) + more(rest);
}

/** A name from a file in quotes, as messages write names: 'h.0.attn.c_attn.weight'. */
export function quoted(text: string, max = SHOWN_MAX): string {
  return `'${shown(text, max)}'`;
}

/** A text (from the user or a file) as a JSON string, cut after `max` characters and escaped: "Then, John"… (N more characters). */
export function quotedText(text: string, max = SHOWN_MAX): string {
  const [head, rest] = cut(text, max);
  return escapeControls(JSON.stringify(head)) + more(rest);
}

/**
 * Any JSON value from a file, written as JSON but bounded: at most `max` characters, nested
 * at most a few levels (deeper parts shown as […] or {…}), without walking more of the value
 * than it shows. JSON.stringify would recurse through a header nested 200,000 levels deep and
 * overflow the stack, or build a string of megabytes, just to say what is wrong with it.
 */
export function preview(value: unknown, max = SHOWN_MAX): string {
  let out = '';
  const full = () => out.length > max;
  const walk = (v: unknown, depth: number): void => {
    if (full()) return;
    if (v === null || typeof v !== 'object') {
      out += typeof v === 'string' ? JSON.stringify(v.length > max ? v.slice(0, max + 1) : v) : String(JSON.stringify(v) ?? v);
      return;
    }
    const list = Array.isArray(v);
    if (depth >= 4) { out += list ? '[…]' : '{…}'; return; }
    out += list ? '[' : '{';
    let first = true;
    const item = (key: string | null, x: unknown) => {
      if (!first) out += ',';
      first = false;
      if (key !== null) out += `${JSON.stringify(key.length > max ? key.slice(0, max + 1) : key)}:`;
      walk(x, depth + 1);
    };
    if (list) {
      for (let i = 0; i < v.length && !full(); i++) item(null, v[i]);
    } else {
      for (const k in v) {
        if (full()) return;
        if (Object.hasOwn(v, k)) item(k, (v as Record<string, unknown>)[k]);
      }
    }
    out += list ? ']' : '}';
  };
  walk(value, 0);
  return full() ? `${escapeControls(out.slice(0, max))}…` : escapeControls(out);
}
