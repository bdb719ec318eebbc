// Frontend (client → server) messages of protocol 3.0, written into a Writer.

import type { Writer } from "./_writer.ts";
import type { ConnectionConfig } from "./config.ts";
import type { BindValue } from "./_binary_params.ts";

const PROTOCOL_3_0 = 196608;
const CANCEL_REQUEST_CODE = 80877102;

const Q = 0x51; // Query
const P = 0x50; // Parse
const B = 0x42; // Bind
const D = 0x44; // Describe
const E = 0x45; // Execute
const S = 0x53; // Sync
const C = 0x43; // Close
const X = 0x58; // Terminate
const p = 0x70; // PasswordMessage, SASLInitialResponse, SASLResponse
const f = 0x66; // CopyFail

/**
 * The StartupMessage's parameters: no more than PgBouncer 1.18 in transaction mode accepts
 * (`options` only when asked for).
 */
export function startupParameters(config: ConnectionConfig): Record<string, string> {
  const params: Record<string, string> = {
    user: config.user,
    database: config.database,
    application_name: config.applicationName,
    client_encoding: "UTF8",
  };
  if (config.options !== undefined) params.options = config.options;
  return params;
}

export function startup(w: Writer, params: Record<string, string>): void {
  w.begin(-1).int32(PROTOCOL_3_0);
  for (const key in params) w.cstring(key).cstring(params[key]);
  w.byte(0).end();
}

export function password(w: Writer, text: string): void {
  w.begin(p).cstring(text).end();
}

export function saslInitialResponse(w: Writer, mechanism: string, data: string): void {
  w.begin(p).cstring(mechanism).value(data).end();
}

export function saslResponse(w: Writer, data: string): void {
  w.begin(p);
  w.string(data);
  w.end();
}

export function query(w: Writer, sql: string): void {
  w.begin(Q).cstring(sql).end();
}

/**
 * Parse (unless `parse` is false: the statement is prepared already), Bind (text in, text out),
 * Describe portal, Execute (`rows` rows, 0: all) and Sync: one extended-protocol round trip.
 * `name` is the statement's name, `""` for the unnamed statement; `portal` the portal's.
 */
export function extendedQuery(
  w: Writer,
  sql: string,
  params: (string | null)[],
  name = "",
  parse = true,
  rows = 0,
  portal = "",
): void {
  if (parse) parseStatement(w, name, sql);
  bind(w, portal, name, params);
  portalNext(w, rows, portal);
}

/**
 * Parse (unless `parse` is false: the statement `name` is prepared already), Bind (text in,
 * text out), Describe of the statement, Execute and Sync: a prepared statement's run before
 * its types are known. The server answers the Describe with the parameters' types
 * (ParameterDescription) and the result's columns (RowDescription, every format code 0, as this
 * Bind asks, or NoData), which later runs reuse. After the Bind, so that the messages are those
 * of any first run (Parse, Bind, Describe, Execute, Sync).
 */
export function preparedQuery(
  w: Writer,
  sql: string,
  params: (string | null)[],
  name: string,
  parse: boolean,
): void {
  if (parse) parseStatement(w, name, sql);
  bind(w, "", name, params);
  w.begin(D).byte(0x53).cstring(name).end();
  w.begin(E).byte(0).int32(0).end();
  w.begin(S).end();
}

/**
 * Bind (in: text, or with `binary` a format code per parameter, 1 for each `Uint8Array` of
 * `params`; out, `formats`: a result format code per column, 1 binary, or none for all text),
 * Execute and Sync of the prepared statement `name`, whose result's columns are known already:
 * no Describe, so the server sends no RowDescription.
 */
export function boundQuery(
  w: Writer,
  name: string,
  params: readonly BindValue[],
  formats: readonly number[] = [],
  binary = false,
): void {
  bind(w, "", name, params, formats, binary);
  w.begin(E).byte(0).int32(0).end();
  w.begin(S).end();
}

/** Parse of `sql` as the statement `name`, the server inferring its parameters' types. */
function parseStatement(w: Writer, name: string, sql: string): void {
  w.begin(P).cstring(name).cstring(sql).int16(0).end();
}

/**
 * Bind of the statement `name` to the portal `portal`: `params` text, or with `binary` a format
 * code per parameter (1 for each `Uint8Array`); `formats` a result format code per column, or
 * none for all text.
 */
function bind(
  w: Writer,
  portal: string,
  name: string,
  params: readonly BindValue[],
  formats: readonly number[] = [],
  binary = false,
): void {
  const n = params.length;
  w.begin(B).cstring(portal).cstring(name);
  if (binary) {
    w.int16(n);
    for (let i = 0; i < n; i++) w.int16(params[i] instanceof Uint8Array ? 1 : 0);
  } else w.int16(0);
  w.int16(n);
  for (let i = 0; i < n; i++) w.value(params[i]);
  w.int16(formats.length);
  for (let i = 0; i < formats.length; i++) w.int16(formats[i]);
  w.end();
}

/**
 * Describe, Execute (`rows` more rows) and Sync of a portal: the next batch of a portal that
 * a transaction block keeps open across Syncs.
 */
export function portalNext(w: Writer, rows: number, portal: string): void {
  w.begin(D).byte(0x50).cstring(portal).end();
  w.begin(E).cstring(portal).int32(rows).end();
  w.begin(S).end();
}

/** Close of a portal, and Sync. */
export function portalClose(w: Writer, portal: string): void {
  w.begin(C).byte(0x50).cstring(portal).end();
  w.begin(S).end();
}

/**
 * Parse (unless `parse` is false: the statement `name` is prepared already), Describe of the
 * statement and Sync: the server answers with the statement's parameter types
 * (ParameterDescription) and its rows' description, and runs nothing.
 */
export function describeStatement(w: Writer, sql: string, name: string, parse: boolean): void {
  if (parse) parseStatement(w, name, sql);
  w.begin(D).byte(0x53).cstring(name).end();
  w.begin(S).end();
}

/** Close of a prepared statement; answered by CloseComplete, even when there is no such one. */
export function closeStatement(w: Writer, name: string): void {
  w.begin(C).byte(0x53).cstring(name).end();
}

export function copyFail(w: Writer, reason: string): void {
  w.begin(f).cstring(reason).end();
}

export function sync(w: Writer): void {
  w.begin(S).end();
}

export function terminate(w: Writer): void {
  w.begin(X).end();
}

/** CancelRequest: a 16-byte message sent on a new connection. */
export function cancelRequest(processId: number, secretKey: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + secretKey.length);
  const view = new DataView(out.buffer);
  view.setInt32(0, out.length);
  view.setInt32(4, CANCEL_REQUEST_CODE);
  view.setInt32(8, processId);
  out.set(secretKey, 12);
  return out;
}
