/**
 * A query-level client of Neon's HTTP protocol (`POST /sql`): no session, one request per query
 * or per batch. It works against Neon and against edgepool's gateway. Rows come back as text
 * and are decoded with the same parsers as on a socket connection, errors become the same
 * {@link PostgresError}, so results are the same whichever way a query went.
 *
 * @module
 */

import { checkRowMode, encodeParams } from "./_query.ts";
import { decodeHttpError, decodeHttpResult } from "./_http_result.ts";
import { parseConfig } from "./config.ts";
import { ConnectionError, errorMessage } from "./errors.ts";
import { type BatchOptions, type BatchQuery, batchStatements } from "./pool/batch.ts";
import { beginStatement } from "./pool/transaction.ts";
import type { QueryOptions, QueryResult } from "./result.ts";
import { noUnixSockets } from "./transport.ts";
import { CLIENT_SOCKET_SETTINGS, redactUrl } from "./url.ts";

/** The `fetch` the client calls: the global one, or one you pass (a mock, a proxy agent, ...). */
export type HttpFetch = (input: string, init: RequestInit) => Promise<Response>;

/**
 * Where the SQL endpoint is: a URL, or a function of the database host and port that returns
 * one (Neon's `fetchEndpoint`).
 */
export type HttpEndpoint = string | ((host: string, port: number) => string);

/** How to reach the HTTP endpoint. */
export interface HttpTransportOptions {
  /**
   * The SQL endpoint. Default `https://<host>/sql`, `<host>` being the host of the connection
   * URL (Neon serves `/sql` there; its driver now defaults to the `api.` host of the region).
   */
  endpoint?: HttpEndpoint;
  /** The fetch function. Default: the global `fetch`. */
  fetch?: HttpFetch;
}

/** Options of {@link HttpClient}. */
export interface HttpClientOptions extends HttpTransportOptions {
  /** Return `int8` values as `bigint` instead of `string`. Default `false`. */
  bigint?: boolean;
}

const ISOLATION_HEADERS: Record<string, string> = {
  "read uncommitted": "ReadUncommitted",
  "read committed": "ReadCommitted",
  "repeatable read": "RepeatableRead",
  "serializable": "Serializable",
};

/**
 * Runs queries over Neon's HTTP protocol. Every call is one `POST`: a query, or a batch run as
 * one transaction. Most code wants `HttpPool`, which adds stats, events and `close()`.
 *
 * Differences from a socket connection: a query without parameters still goes as one
 * statement (no `;`-separated scripts), and there is no session, so nothing (`SET`, temporary
 * tables, `LISTEN`) outlives a request.
 *
 * @example
 * ```ts ignore
 * import { HttpClient } from "@edgepool/edgepool/transports/http";
 * const client = new HttpClient("postgres://app:secret@db.example.com/app");
 * const { rows } = await client.query("select $1::int + 1 as n", [41]);
 * ```
 */
export class HttpClient {
  /** The SQL endpoint requests go to. */
  readonly endpoint: string;
  readonly #connectionString: string;
  readonly #secrets: string[];
  readonly #redactedUrl: string;
  readonly #fetch: HttpFetch;
  readonly #bigint: boolean;
  readonly #shown: string;

  /**
   * Checks the URL and options; sends nothing.
   *
   * @throws {TypeError} For a malformed URL (the message hides the password), a bad option, or
   *   an endpoint that is not an http(s) URL.
   */
  constructor(url: string | URL, options?: HttpClientOptions) {
    const o = options ?? {};
    if (typeof o !== "object") throw new TypeError("HttpClient options must be an object");
    checkTransportOptions(o);
    const text = String(url).trim();
    // The query parameters are the endpoint's business (Neon makes them startup parameters and
    // handles `channel_binding` itself): check the rest of the URL only.
    const query = text.indexOf("?");
    const config = parseConfig(query < 0 ? text : text.slice(0, query), { bigint: o.bigint });
    // A Unix-domain socket is a file on this machine, which no endpoint can reach.
    const queryHost = query < 0 ? null : new URLSearchParams(text.slice(query + 1)).get("host");
    for (const host of [config.host, queryHost]) {
      if (host?.[0] === "/") throw noUnixSockets("HTTP transport", host, config.port);
    }
    this.#connectionString = query < 0 ? text : withoutClientSide(text, query);
    this.#bigint = config.bigint;
    const password = typeof config.password === "string" ? config.password : "";
    // A server most likely echoes the whole connection string; a bare password is hidden too,
    // unless it is so short that hiding it would garble every message (and give it away).
    this.#secrets = password.length < 4 ? [] : [password, encodeURIComponent(password)];
    this.#redactedUrl = redactUrl(text);
    this.endpoint = resolveEndpoint(o.endpoint, config.host, config.port);
    this.#shown = this.#scrub(redactUrl(this.endpoint));
    const fetchFn = o.fetch;
    // The global fetch is looked up per call and never called as a method of another object
    // (Workers reject that with "Illegal invocation").
    this.#fetch = fetchFn ?? ((input, init) => fetch(input, init));
  }

  /**
   * Runs one statement: `POST {query, params}`. Parameters are serialized as on a socket
   * connection (`serializeParam`), so the server receives the same text. `types` (pg's
   * per-query parsers) reads the values as on a socket connection; `name` is refused
   * (`UNSUPPORTED`): there is no connection to prepare a statement on.
   *
   * @throws {PostgresError} The server's error (HTTP 400), with every field it sent.
   * @throws {ConnectionError} `CONNECT_FAILED` when the endpoint cannot be reached or refuses
   *   the request (other 4xx); `CONNECTION_LOST` for a 5xx answer (507: the result is too large)
   *   or a response cut off, when whether the statement ran is unknown; `PROTOCOL_ERROR` for an
   *   answer that is not Neon's JSON; `UNSUPPORTED` for `name`.
   */
  async query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<Row>> {
    if (typeof sql !== "string") {
      throw new TypeError(`The query must be a string, not ${typeof sql}`);
    }
    const values = encodeParams(params) ?? [];
    const rowMode = checkRowMode(options?.rowMode);
    const types = options?.types;
    if (options?.serializers !== undefined) throw serializersOverHttp("serializers");
    if (types !== undefined && typeof types?.getTypeParser !== "function") {
      throw new TypeError("types must be an object with a getTypeParser(oid) function");
    }
    if (options?.name !== undefined) {
      // As on a socket connection whose statement cache is off: a prepared statement would
      // not outlive the request, which holds its server connection for one statement only.
      throw new ConnectionError(
        "UNSUPPORTED",
        `Cannot prepare the statement "${String(options.name)}" over HTTP: each query is ` +
          "one request, on no connection of its own; leave out name",
      );
    }
    const body = JSON.stringify({ query: sql, params: values });
    const answer = await this.#post(body, this.#headers(), options?.signal);
    return decodeHttpResult(answer, rowMode, this.#bigint, types) as QueryResult<Row>;
  }

  /**
   * Runs statements as one transaction: `POST {queries: [...]}` with the
   * `Neon-Batch-Isolation-Level`, `Neon-Batch-Read-Only` and `Neon-Batch-Deferrable` headers
   * for the options given. Resolves with the results in order; a failing statement rolls back
   * all of them and rejects with its error. Errors as for {@link HttpClient.query}.
   */
  async batch<Row = Record<string, unknown>>(
    queries: readonly BatchQuery[],
    options?: BatchOptions,
  ): Promise<QueryResult<Row>[]> {
    const statements = batchStatements(queries);
    beginStatement(options); // the same checks as on a socket pool
    if (options?.serializers !== undefined) throw serializersOverHttp("serializers");
    const rowMode = checkRowMode(options?.rowMode);
    if (statements.length === 0) return [];
    const headers = this.#headers();
    if (options?.isolation !== undefined) {
      headers["Neon-Batch-Isolation-Level"] =
        ISOLATION_HEADERS[String(options.isolation).toLowerCase()];
    }
    if (options?.readOnly !== undefined) headers["Neon-Batch-Read-Only"] = String(options.readOnly);
    if (options?.deferrable !== undefined) {
      headers["Neon-Batch-Deferrable"] = String(options.deferrable);
    }
    const body = JSON.stringify({
      queries: statements.map((s) => ({ query: s.sql, params: encodeParams(s.params) })),
    });
    const answer = await this.#post(body, headers, options?.signal);
    const results = (answer as { results?: unknown })?.results;
    if (!Array.isArray(results) || results.length !== statements.length) {
      throw new ConnectionError(
        "PROTOCOL_ERROR",
        `Unexpected answer from ${this.#shown}: expected ${statements.length} batch results`,
      );
    }
    return results.map((r) => decodeHttpResult(r, rowMode, this.#bigint) as QueryResult<Row>);
  }

  #headers(): Record<string, string> {
    // No Content-Type, as Neon's driver: fetch sends text/plain, which needs no CORS preflight
    // of its own and which Neon's proxy and edgepool's gateway accept.
    return {
      "Neon-Connection-String": this.#connectionString,
      "Neon-Raw-Text-Output": "true",
      "Neon-Array-Mode": "true",
    };
  }

  async #post(
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError("options.signal must be an AbortSignal");
    }
    signal?.throwIfAborted();
    let response: Response;
    try {
      response = await this.#fetch(this.endpoint, { method: "POST", headers, body, signal });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new ConnectionError(
        "CONNECT_FAILED",
        `Cannot reach the SQL endpoint ${this.#shown}: ${this.#scrub(errorMessage(error))}`,
        { cause: error },
      );
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new ConnectionError(
        "CONNECTION_LOST",
        `The answer from ${this.#shown} was cut off (HTTP ${response.status}): ` +
          this.#scrub(errorMessage(error)),
        { cause: error },
      );
    }
    if (!response.ok) throw decodeHttpError(response.status, this.#scrub(text), this.#shown);
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new ConnectionError(
        "PROTOCOL_ERROR",
        `Unexpected answer from ${this.#shown} (HTTP ${response.status}): not JSON: ` +
          this.#scrub(text.slice(0, 200)),
        { cause: error },
      );
    }
  }

  /** Hides the password wherever a server or a fetch error might have echoed it. */
  #scrub(text: string): string {
    text = text.replaceAll(this.#connectionString, this.#redactedUrl);
    for (const secret of this.#secrets) text = text.replaceAll(secret, "***");
    return text;
  }
}

/** Checks the options `httpTransport()` and {@link HttpClient} share. */
export function checkTransportOptions(o: HttpTransportOptions): void {
  if (
    o.endpoint !== undefined && typeof o.endpoint !== "string" &&
    typeof o.endpoint !== "function"
  ) {
    throw new TypeError("options.endpoint must be a URL string or a function (host, port) => URL");
  }
  if (o.fetch !== undefined && typeof o.fetch !== "function") {
    throw new TypeError("options.fetch must be a function");
  }
}

function resolveEndpoint(endpoint: HttpEndpoint | undefined, host: string, port: number): string {
  const url = typeof endpoint === "function"
    ? endpoint(host, port)
    : endpoint ?? `https://${host.includes(":") ? `[${host}]` : host}/sql`;
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new TypeError(`The SQL endpoint is not a URL: ${redactUrl(String(url))}`);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    throw new TypeError(`The SQL endpoint must be an http(s) URL, not ${parsed.protocol}`);
  }
  return parsed.href;
}

/**
 * `text` (a URL whose query string starts at `query`) less the client's own socket and TLS
 * settings: over HTTP the TLS is the endpoint's, and a gateway refuses to be told how to connect.
 */
function withoutClientSide(text: string, query: number): string {
  const kept = text.slice(query + 1).split("&").filter((pair) => {
    const eq = pair.indexOf("=");
    const name = eq < 0 ? pair : pair.slice(0, eq);
    return pair !== "" && !CLIENT_SOCKET_SETTINGS.has(safeDecode(name));
  });
  return kept.length === 0 ? text.slice(0, query) : `${text.slice(0, query)}?${kept.join("&")}`;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * The TypeError of `serializers` over HTTP (`what` names the option): they are picked by the
 * parameters' types, which only a Describe on a session tells.
 */
export function serializersOverHttp(what: string): TypeError {
  return new TypeError(
    `${what} cannot be used over HTTP: a serializer is picked by the type the server gives ` +
      "each parameter, which only a Describe on a session tells, and Neon's HTTP protocol has " +
      "none; serialize those values yourself (JSON.stringify, toISOString...) before passing them",
  );
}
