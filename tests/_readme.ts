// README.md's code, for the tests that run it: the fenced blocks of one section, found by its
// heading, so that the README shows what the tests run.

import { readFileSync } from "node:fs";

const README = new URL("../README.md", import.meta.url);

/** A fenced code block: its language (the word after the fence) and its text. */
export interface CodeBlock {
  lang: string;
  code: string;
}

/**
 * The fenced code blocks of the README section headed `heading` (any level; the text after the
 * `#`s), up to the next heading of the same level or higher. Throws if there is no such
 * section, so that a renamed heading fails its test instead of testing nothing.
 */
export function readmeBlocks(heading: string): CodeBlock[] {
  const lines = readFileSync(README, "utf8").split("\n");
  let level = 0;
  const blocks: CodeBlock[] = [];
  let block: CodeBlock | null = null;
  for (const line of lines) {
    if (block !== null) {
      if (line.startsWith("```")) {
        blocks.push(block);
        block = null;
      } else {
        block.code += line + "\n";
      }
      continue;
    }
    const fence = /^```(\S*)/.exec(line);
    if (fence !== null) {
      if (level > 0) block = { lang: fence[1], code: "" };
      continue;
    }
    const title = /^(#+) (.*)$/.exec(line);
    if (title === null) continue;
    if (level > 0 && title[1].length <= level) break;
    if (level === 0 && title[2].trim() === heading) level = title[1].length;
  }
  if (level === 0) throw new Error(`README.md has no heading "${heading}"`);
  return blocks;
}

/**
 * Runs the `ts` snippet of the README section headed `heading` as written: plain JavaScript but
 * for its one import line, whose names come from `imports` (`{ connect, sql }`). `process.env`
 * holds `env`, and `console.log` is captured: returns what it printed, one array per call.
 * Throws if the section has no `ts` snippet, or more than one import.
 */
export async function runReadmeSnippet(
  heading: string,
  imports: Record<string, unknown>,
  env: Record<string, string>,
): Promise<unknown[][]> {
  const snippet = readmeBlocks(heading).find((b) => b.lang === "ts")?.code;
  if (snippet === undefined) throw new Error(`README's "${heading}" has no ts snippet`);
  const body = snippet.replace(/^import .*\n/m, "");
  if (/^import /m.test(body)) throw new Error(`README's "${heading}" snippet has two imports`);
  const printed: unknown[][] = [];
  const log = (...args: unknown[]) => void printed.push(args);
  const AsyncFunction = (async () => {}).constructor as new (
    ...args: string[]
  ) => (...args: unknown[]) => Promise<void>;
  const names = Object.keys(imports);
  const run = new AsyncFunction(...names, "process", "console", body);
  await run(...names.map((name) => imports[name]), { env }, { log });
  return printed;
}
