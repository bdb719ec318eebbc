/**
 * Running a function inside BEGIN … COMMIT on a checked-out connection.
 *
 * @module
 */

import { PoolError } from "../errors.ts";
import type { PooledConnection } from "./pooled_connection.ts";

/** SQL isolation levels. */
export type IsolationLevel =
  | "read uncommitted"
  | "read committed"
  | "repeatable read"
  | "serializable";

/** How `transaction()` begins. */
export interface TransactionOptions {
  /** Isolation level; the server's default when absent. */
  isolation?: IsolationLevel;
  /** `READ ONLY` (true) or `READ WRITE` (false); the server's default when absent. */
  readOnly?: boolean;
  /** `DEFERRABLE` (only meaningful with serializable, read only). */
  deferrable?: boolean;
}

const LEVELS: readonly string[] = [
  "read uncommitted",
  "read committed",
  "repeatable read",
  "serializable",
];

/** The BEGIN statement for `options`. Throws TypeError on an unknown isolation level. */
export function beginStatement(options?: TransactionOptions): string {
  let sql = "BEGIN";
  const isolation = options?.isolation;
  if (isolation !== undefined) {
    const level = String(isolation).toLowerCase();
    if (!LEVELS.includes(level)) {
      throw new TypeError(
        `isolation must be one of ${LEVELS.join(", ")}, not ${String(isolation)}`,
      );
    }
    sql += ` ISOLATION LEVEL ${level.toUpperCase()}`;
  }
  if (options?.readOnly !== undefined) sql += options.readOnly ? " READ ONLY" : " READ WRITE";
  if (options?.deferrable !== undefined) {
    sql += options.deferrable ? " DEFERRABLE" : " NOT DEFERRABLE";
  }
  return sql;
}

/**
 * Runs `fn(connection)` between BEGIN and COMMIT; rolls back and rethrows if it throws. A
 * COMMIT that the server answers with ROLLBACK (the transaction had failed) rejects with
 * `ROLLED_BACK`.
 */
export async function runTransaction<C, T>(
  connection: PooledConnection<C>,
  fn: (connection: PooledConnection<C>) => Promise<T>,
  options?: TransactionOptions,
): Promise<T> {
  if (typeof fn !== "function") throw new TypeError("transaction() needs a function");
  await connection.query(beginStatement(options));
  let result: T;
  try {
    result = await fn(connection);
  } catch (error) {
    if (connection.transactionStatus !== "idle" && connection.transactionStatus !== "unknown") {
      // If this fails the connection is broken; the pool's checkin discards it.
      await connection.query("ROLLBACK").catch(() => {});
    }
    throw error;
  }
  const commit = await connection.query("COMMIT");
  if (commit.command === "ROLLBACK") {
    throw new PoolError(
      "ROLLED_BACK",
      "The transaction was rolled back instead of committed: a statement in it failed " +
        "(and its error was caught inside the transaction function)",
    );
  }
  return result;
}
