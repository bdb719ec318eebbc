/**
 * `batch()`: several statements run as one transaction, sent together. On a socket pool the
 * BEGIN, the statements and the COMMIT are pipelined on one connection (one round trip); over
 * HTTP they are one request. Both take and return the same shapes, so code can switch.
 *
 * @module
 */

import { PoolError, PostgresError } from "../errors.ts";
import type { QueryResult, RowMode, SerializersOption } from "../result.ts";
import { isSqlTemplate, type SqlTemplate } from "../sql.ts";
import type { PooledConnection } from "./pooled_connection.ts";
import type { TransactionOptions } from "./transaction.ts";

/**
 * One statement of a batch: SQL text alone, or with its parameters (`$1`, `$2`, ...), or a
 * template made by the `sql` tag.
 */
export type BatchQuery = string | { sql: string; params?: readonly unknown[] } | SqlTemplate;

/** A batch statement after validation. */
export interface BatchStatement {
  /** The SQL text. */
  sql: string;
  /** The parameters; `[]` when none were given. */
  params: readonly unknown[];
}

/** Options of `batch()`: how the transaction begins, and the query options of every statement. */
export interface BatchOptions extends TransactionOptions {
  /**
   * Gives up: the batch rejects with the signal's reason and the transaction is rolled back,
   * unless the server had already committed it (then the outcome is unknown to the caller, as
   * with any cancelled query).
   */
  signal?: AbortSignal;
  /** Row shape of every result; default `"object"`. */
  rowMode?: RowMode;
  /** Socket pools only: the checkout deadline in ms, instead of the pool's `timeout`. */
  timeout?: number;
  /**
   * Socket pools only: parameter serializers of every statement, over the connection's (see
   * `QueryOptions.serializers`). Over HTTP, a TypeError.
   */
  serializers?: SerializersOption;
}

/**
 * Validates a batch: an array of SQL strings, `{ sql, params }` objects or `sql` templates.
 * Every statement runs with the extended protocol (one statement per entry, as over HTTP), so
 * `params` defaults to `[]`. Throws TypeError on anything else.
 */
export function batchStatements(queries: readonly BatchQuery[]): BatchStatement[] {
  if (!Array.isArray(queries)) {
    throw new TypeError("batch() takes an array of SQL strings or { sql, params } objects");
  }
  return queries.map((query, i) => {
    if (typeof query === "string") return { sql: query, params: [] };
    if (isSqlTemplate(query)) return { sql: query.text, params: query.values };
    if (
      typeof query !== "object" || query === null || !("sql" in query) ||
      typeof query.sql !== "string"
    ) {
      throw new TypeError(
        `batch() statement ${i} must be a SQL string, { sql: string, params?: unknown[] } ` +
          "or an sql`...` template",
      );
    }
    const params = query.params ?? [];
    if (!Array.isArray(params)) {
      throw new TypeError(`batch() statement ${i}: params must be an array`);
    }
    return { sql: query.sql, params };
  });
}

/**
 * Runs `statements` between `begin` and COMMIT on a checked-out connection, writing them all
 * before awaiting any, so they leave in one flight and come back in one. A failing statement
 * makes the rest fail with 25P02 and the COMMIT roll back: the batch rejects with the failing
 * statement's own error. Every answer is awaited before returning, so the connection is idle
 * again (its transaction ended) when the caller releases it.
 */
export async function runBatch<C, Row>(
  connection: PooledConnection<C>,
  begin: string,
  statements: readonly BatchStatement[],
  options?: BatchOptions,
): Promise<QueryResult<Row>[]> {
  const signal = options?.signal;
  const queryOptions = { signal, rowMode: options?.rowMode, serializers: options?.serializers };
  // BEGIN and COMMIT go without the signal: an abort cancels the running statement, which
  // fails the transaction, and the COMMIT then rolls it back.
  const sent = [
    connection.query(begin),
    ...statements.map((s) => connection.query<Row>(s.sql, s.params, queryOptions)),
    connection.query("COMMIT"),
  ];
  const outcomes = await Promise.allSettled(sent);
  const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
  if (failed.length > 0) {
    // The statements after the failing one only say the transaction was aborted: skip those.
    const real = failed.find((o) => !isAbortedTransaction(o.reason)) ?? failed[0];
    throw real.reason;
  }
  const commit = (outcomes[outcomes.length - 1] as PromiseFulfilledResult<QueryResult>).value;
  if (commit.command === "ROLLBACK") {
    throw new PoolError(
      "ROLLED_BACK",
      "The batch was rolled back instead of committed: the server refused the COMMIT",
    );
  }
  return outcomes.slice(1, -1).map((o) => (o as PromiseFulfilledResult<QueryResult<Row>>).value);
}

/** 25P02: "current transaction is aborted, commands ignored until end of transaction block". */
function isAbortedTransaction(error: unknown): boolean {
  return error instanceof PostgresError && error.code === "25P02";
}
