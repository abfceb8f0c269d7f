// Untrusted text (completions and prompts are model output): shown literally, as text nodes only — never markup.
// Characters that would act instead of show are made visible as small marked labels: C0 controls by their names
// (NUL, ESC — an ANSI escape reads "ESC[31m"; the Unicode control pictures ␀ ␛ are missing from most fonts), bidi
// controls, zero-width and other invisible characters too ("RLO", "ZWSP"), so an RTL override cannot reorder what
// follows and hidden text cannot hide. The containers these go into isolate bidi and wrap anywhere (style.css,
// .rldk-text).

const C0_NAMES = [
  "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR", "SO", "SI",
  "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US",
];

const NAMED: Record<number, string> = {
  0x00ad: "SHY",
  0x061c: "ALM",
  0x180e: "MVS",
  0x200b: "ZWSP",
  0x200c: "ZWNJ",
  0x200d: "ZWJ",
  0x200e: "LRM",
  0x200f: "RLM",
  0x2028: "LSEP",
  0x2029: "PSEP",
  0x202a: "LRE",
  0x202b: "RLE",
  0x202c: "PDF",
  0x202d: "LRO",
  0x202e: "RLO",
  0x2060: "WJ",
  0x2061: "FA",
  0x2062: "IT",
  0x2063: "IS",
  0x2064: "IP",
  0x2066: "LRI",
  0x2067: "RLI",
  0x2068: "FSI",
  0x2069: "PDI",
  0xfeff: "BOM",
  0xfff9: "IAA",
  0xfffa: "IAS",
  0xfffb: "IAT",
};

/**
 * Characters shown as a label: C0 controls but tab and newline (and a CR that ends a line), DEL, C1 controls, the
 * invisible formatting characters above, and Unicode tag characters (U+E0000–E007F, invisible ASCII look-alikes used
 * to smuggle text).
 */
const LABELLED =
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb\u{e0000}-\u{e007f}]|\r(?!\n)/gu;

/** Labels per text beyond which the rest are written inline as plain text (a million NULs stays one node). */
const MAX_LABELS = 400;

function label(cp: number): string {
  if (cp < 0x20) return C0_NAMES[cp];
  if (cp === 0x7f) return "DEL";
  if (cp >= 0xe0000 && cp <= 0xe007f) {
    const ascii = cp - 0xe0000;
    return ascii >= 0x20 && ascii < 0x7f ? `TAG ${String.fromCharCode(ascii)}` : `U+${cp.toString(16).toUpperCase()}`;
  }
  return NAMED[cp] ?? `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** `text` for a title attribute, an option or a header: each labelled character as ⟨label⟩, cut to `max`. */
export function plainText(text: string, max = 300): string {
  const s = text.length > max ? text.slice(0, max) + "…" : text;
  return s.replace(LABELLED, (ch) => `⟨${label(ch.codePointAt(0)!)}⟩`);
}

/**
 * Append `text` to `parent` literally: text nodes, and a `<span class="rldk-ctrl">` label (its title the code point)
 * for each control, invisible or formatting character. Never parses anything.
 */
export function appendText(parent: HTMLElement, s: string): void {
  let last = 0;
  let labels = 0;
  const frag = document.createDocumentFragment();
  let plain = "";
  LABELLED.lastIndex = 0;
  for (let m = LABELLED.exec(s); m !== null; m = LABELLED.exec(s)) {
    const cp = m[0].codePointAt(0)!;
    plain += s.slice(last, m.index);
    last = m.index + m[0].length;
    if (labels >= MAX_LABELS) {
      plain += `⟨${label(cp)}⟩`;
      continue;
    }
    if (plain) frag.append(document.createTextNode(plain));
    plain = "";
    const span = document.createElement("span");
    span.className = "rldk-ctrl";
    span.textContent = label(cp);
    span.title = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}: a control, invisible or formatting character, shown as a label`;
    frag.append(span);
    labels++;
  }
  plain += s.slice(last);
  if (plain) frag.append(document.createTextNode(plain));
  parent.append(frag);
}

/** A text block: `<div class="rldk-text">` holding `text` literally (see appendText); `more` adds a trailing note. */
export function textBlock(text: string, className = "", more?: string): HTMLElement {
  const div = document.createElement("div");
  div.className = "rldk-text" + (className ? " " + className : "");
  appendText(div, text);
  if (more) {
    const note = document.createElement("span");
    note.className = "rldk-text-more";
    note.textContent = more;
    div.append(note);
  }
  return div;
}

/** `text` with [start, end) marked: a text block whose match is a `<mark>` (all parts via appendText). */
export function markedBlock(text: string, match: [number, number] | null, lead: boolean, className = ""): HTMLElement {
  const div = document.createElement("div");
  div.className = "rldk-text" + (className ? " " + className : "");
  if (lead) div.append(document.createTextNode("…"));
  if (match && match[0] >= 0 && match[1] > match[0] && match[1] <= text.length) {
    appendText(div, text.slice(0, match[0]));
    const mark = document.createElement("mark");
    mark.className = "rldk-mark";
    appendText(mark, text.slice(match[0], match[1]));
    div.append(mark);
    appendText(div, text.slice(match[1]));
  } else {
    appendText(div, text);
  }
  return div;
}
