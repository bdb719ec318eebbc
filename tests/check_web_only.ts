// Checks that src/ and the gateway's core (gateway/ but its runtime adapters) use only
// web-platform APIs: no `node:` imports, no `Deno.`, `Buffer`, `process.` or `require(`.
// Runtime-specific code belongs in transports/ and in the gateway's adapters and CLI, named
// one by one in GATEWAY_RUNTIME_FILES: a new file in gateway/ is checked unless added there.
//
// Run: deno run -A tests/check_web_only.ts   (exit 1 and one `file:line:col: what` per hit)
//
// Comments, string contents and regular-expression literals are blanked out before matching,
// so an explanation or an error message may name these APIs; `typeof Deno` (runtime detection
// without touching the API) is allowed.

import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

export interface Violation {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  message: string;
  /** The offending source line, trimmed. */
  text: string;
}

const RULES: { pattern: RegExp; message: string }[] = [
  { pattern: /(?<![\w$.])(?:globalThis\s*\.\s*)?Deno\s*\??\./g, message: "uses Deno." },
  { pattern: /(?<![\w$.])(?:globalThis\s*\.\s*)?Buffer\b/g, message: "uses Buffer" },
  { pattern: /(?<![\w$.])(?:globalThis\s*\.\s*)?process\s*\??\./g, message: "uses process." },
  { pattern: /(?<![\w$.])require\s*\(/g, message: "calls require(" },
];

// What may precede a module specifier: `from "x"`, `import "x"`, `import("x")`, `require("x")`.
const IMPORT_CONTEXT = /(?:\bfrom|\bimport|\bimport\s*\(|\brequire\s*\()\s*$/;

/** Web-only violations in the given files (path → source text), in file and line order. */
export function findViolations(files: Map<string, string>): Violation[] {
  const found: Violation[] = [];
  for (const [file, source] of files) {
    const inFile: Violation[] = [];
    const { code, strings } = maskSource(source);
    const lines = source.split("\n");
    const at = (index: number, message: string) => {
      const before = code.slice(0, index);
      const line = before.split("\n").length;
      const column = index - before.lastIndexOf("\n");
      inFile.push({ file, line, column, message, text: lines[line - 1].trim() });
    };
    for (const { pattern, message } of RULES) {
      for (const match of code.matchAll(pattern)) at(match.index!, message);
    }
    for (const { start, value } of strings) {
      if (value.startsWith("node:") && IMPORT_CONTEXT.test(code.slice(0, start))) {
        at(start, `imports ${value}`);
      }
    }
    found.push(...inFile.sort((a, b) => a.line - b.line || a.column - b.column));
  }
  return found;
}

/**
 * The source with comments and the contents of strings, template literals and regular
 * expressions replaced by spaces (newlines kept, so offsets and lines still match), plus the
 * quoted strings that were blanked.
 */
export function maskSource(source: string): {
  code: string;
  strings: { start: number; value: string }[];
} {
  const out = source.split("");
  const strings: { start: number; value: string }[] = [];
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = " ";
  };
  const n = source.length;
  // Brace depth at each open `${`, so the `}` that closes it resumes the template.
  const templates: number[] = [];
  let depth = 0;

  // Scans template text from `i` to its end or next `${`; returns where code resumes.
  const template = (i: number): number => {
    let j = i;
    while (j < n) {
      if (source[j] === "\\") j += 2;
      else if (source[j] === "`") break;
      else if (source[j] === "$" && source[j + 1] === "{") {
        blank(i, j);
        templates.push(depth);
        return j + 2;
      } else j++;
    }
    blank(i, j);
    return j + 1;
  };

  let i = 0;
  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const to = end < 0 ? n : end;
      blank(i, to);
      i = to;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const to = end < 0 ? n : end + 2;
      blank(i, to);
      i = to;
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < n && source[j] !== c && source[j] !== "\n") j += source[j] === "\\" ? 2 : 1;
      strings.push({ start: i, value: source.slice(i + 1, j) });
      blank(i + 1, j);
      i = j + 1;
    } else if (c === "`") {
      i = template(i + 1);
    } else if (c === "}" && templates.length > 0 && templates[templates.length - 1] === depth) {
      templates.pop();
      i = template(i + 1);
    } else if (c === "/" && regexMayStart(out, i)) {
      let j = i + 1;
      let inClass = false;
      while (j < n && source[j] !== "\n" && (source[j] !== "/" || inClass)) {
        if (source[j] === "\\") j++;
        else if (source[j] === "[") inClass = true;
        else if (source[j] === "]") inClass = false;
        j++;
      }
      blank(i + 1, j);
      i = j + 1;
    } else {
      if (c === "{") depth++;
      else if (c === "}") depth--;
      i++;
    }
  }
  return { code: out.join(""), strings };
}

const BEFORE_REGEX = new Set("(,=:[!&|?{};+-*%<>~^".split(""));
const KEYWORDS_BEFORE_REGEX = new Set([
  "return",
  "typeof",
  "instanceof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "yield",
  "await",
]);

// A `/` starts a regular expression, not a division, after an operator, an opening bracket or
// one of a few keywords, judged from the last code character before it.
function regexMayStart(code: string[], i: number): boolean {
  let p = i - 1;
  while (p >= 0 && /\s/.test(code[p])) p--;
  if (p < 0) return true;
  if (BEFORE_REGEX.has(code[p])) return true;
  if (!/[\w$]/.test(code[p])) return false;
  let q = p;
  while (q >= 0 && /[\w$]/.test(code[q])) q--;
  return KEYWORDS_BEFORE_REGEX.has(code.slice(q + 1, p + 1).join(""));
}

function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...sourceFiles(path));
    else if (/\.m?ts$/.test(entry.name)) files.push(path);
  }
  return files.sort();
}

/** The gateway's files that bind a runtime's server and process APIs; the rest is its core. */
export const GATEWAY_RUNTIME_FILES: readonly string[] = [
  "gateway/cli.ts",
  "gateway/deno.ts",
  "gateway/node.ts",
];

if (import.meta.main) {
  const root = fileURLToPath(new URL("..", import.meta.url));
  let paths: string[] = [];
  for (const dir of ["src", "gateway"]) {
    try {
      paths.push(...sourceFiles(join(root, dir)));
    } catch {
      console.log(`check_web_only: no ${dir}/ directory, nothing to check there`);
    }
  }
  paths = paths.filter((p) => !GATEWAY_RUNTIME_FILES.includes(relative(root, p)));
  const files = new Map(paths.map((p) => [relative(root, p), readFileSync(p, "utf8")]));
  const violations = findViolations(files);
  for (const v of violations) {
    console.error(`${v.file}:${v.line}:${v.column}: ${v.message}    ${v.text}`);
  }
  if (violations.length > 0) {
    console.error(`check_web_only: ${violations.length} non-web API use(s) in src/, gateway/`);
    process.exit(1);
  }
  console.log(`check_web_only: ${files.size} file(s) in src/ and gateway/ use only web APIs`);
}
