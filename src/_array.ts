// PostgreSQL array literals in text form: `{1,2,NULL,"a \\"b\\""}`, nested, with an optional
// bounds prefix, read into JS arrays with an element parser.

import type { TextParser } from "./types.ts";

const BACKSLASH = 92;
const QUOTE = 34;
const COMMA = 44;
const LBRACE = 123;
const RBRACE = 125;

// Where the array reader stands in the text. Parsing is synchronous and element parsers never
// parse arrays, so one module-level cursor is safe and saves an allocation per call.
let cursor = 0;

function isNull(token: string): boolean {
  return token.length === 4 && (token.charCodeAt(0) | 32) === 110 &&
    (token.charCodeAt(1) | 32) === 117 && (token.charCodeAt(2) | 32) === 108 &&
    (token.charCodeAt(3) | 32) === 108;
}

function parseArray(text: string, parse: TextParser | undefined): unknown[] {
  // "[0:1]={1,2}": the bounds prefix, printed when a lower bound is not 1.
  cursor = text.charCodeAt(0) === 91 ? text.indexOf("=") + 1 : 0;
  if (text.charCodeAt(cursor) !== LBRACE) throw malformedArray(cursor);
  return readArray(text, parse);
}

/** Reads the array whose `{` is at `cursor`, and leaves `cursor` after its `}`. */
function readArray(text: string, parse: TextParser | undefined): unknown[] {
  const result: unknown[] = [];
  const n = text.length;
  let i = cursor + 1;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === RBRACE) {
      cursor = i + 1;
      return result;
    }
    if (c === COMMA) {
      i++;
    } else if (c === LBRACE) {
      cursor = i;
      result.push(readArray(text, parse));
      i = cursor;
    } else if (c === QUOTE) {
      let value = "";
      let start = ++i;
      for (;;) {
        if (i >= n) throw malformedArray(i);
        const d = text.charCodeAt(i);
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          value += text.slice(start, i);
          start = i + 1; // the escaped character opens the next slice
          i += 2;
        } else {
          i++;
        }
      }
      value += text.slice(start, i++);
      result.push(parse === undefined ? value : parse(value));
    } else {
      const start = i;
      for (; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === COMMA || d === RBRACE) break;
      }
      const token = text.slice(start, i);
      result.push(isNull(token) ? null : parse === undefined ? token : parse(token));
    }
  }
  throw malformedArray(i);
}

function malformedArray(at: number): SyntaxError {
  return new SyntaxError(`Malformed array literal: unexpected end or character at ${at}`);
}

export function arrayOf(parse: TextParser | undefined): TextParser {
  return (text) => parseArray(text, parse);
}
