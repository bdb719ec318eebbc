// Helpers shared by the test files: protocol bytes for fake servers, and assertions on
// rejections and errors.

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { ConnectionError, type ConnectionErrorCode, PostgresError } from "../mod.ts";

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function int32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setInt32(0, n);
  return out;
}

export function int16(n: number): Uint8Array {
  const out = new Uint8Array(2);
  new DataView(out.buffer).setInt16(0, n);
  return out;
}

/** What `rejection()` gives for a promise that resolved instead. */
export class Resolved {
  constructor(readonly value: unknown) {}
}

/** The error `promise` rejects with (a `Resolved` if it resolves). Never rejects, so it can be
 * taken at once and awaited later without an unhandled rejection in between. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    return new Resolved(await promise);
  } catch (error) {
    return error;
  }
}

export function show(value: unknown): string {
  return value instanceof Resolved
    ? `a resolved promise (${inspect(value.value, { depth: 1 })})`
    : inspect(value, { depth: 1 });
}

export function assertConnectionError(
  error: unknown,
  code: ConnectionErrorCode,
): asserts error is ConnectionError {
  assert.ok(
    error instanceof ConnectionError,
    `expected ConnectionError ${code}, got ${show(error)}`,
  );
  assert.equal(error.code, code, `expected ${code}: ${error.message}`);
}

export function assertPostgresError(error: unknown, code: string): asserts error is PostgresError {
  assert.ok(error instanceof PostgresError, `expected PostgresError ${code}, got ${show(error)}`);
  assert.equal(error.code, code, `expected SQLSTATE ${code}: ${error.message}`);
}
