// Neon's `/sql` gives each request a session of its own; the gateway runs requests on pooled
// server connections, so what one request leaves in its session (a setting, a role, LISTEN, a
// temporary table, an advisory lock, a prepared statement, a cursor WITH HOLD, lastval()...)
// would reach the next request on that connection, another client's maybe. Every request is
// followed by `DISCARD ALL`, PostgreSQL's own "back to a fresh session", written in the same
// flight as the request's statements, so that it costs the server's work but no round trip;
// the connection goes back to the pool only once it has answered.
//
// No check of the request's text could tell that a reset is not needed (`select
// set_config(...)`, a function that sets a setting or takes a lock), so it always runs. Its
// `DEALLOCATE ALL` is why the gateway's connections have no statement cache (gateway/sql.ts).
// A finer reset that spares a cache (RESET ALL, UNLISTEN *, pg_advisory_unlock_all(),
// DISCARD TEMP, DISCARD SEQUENCES, CLOSE ALL and a look for statements prepared with SQL
// PREPARE) was measured slower: seven statements and a scan of pg_prepared_statements.

import type { Connection } from "../src/connection.ts";
import type { PooledConnection } from "../src/pool/pooled_connection.ts";

/** The reset. It is refused inside a transaction block: then it is run again after ROLLBACK. */
export const RESET_SESSION = "DISCARD ALL";

/**
 * Writes the reset behind what is already written on `conn`. Resolves with whether the
 * session is clean: the reset ran, and the session is outside a transaction. Never rejects:
 * what is not clean is for {@link returnClean}.
 */
export function startReset(conn: PooledConnection<Connection>): Promise<boolean> {
  return conn.query(RESET_SESSION).then(
    () => conn.connection.transactionStatus === "idle",
    () => false,
  );
}

/**
 * Returns `conn` to the pool once its session is clean. `clean`: what {@link startReset} found.
 * When it was not (the request left a transaction open, or the reset failed), the session is
 * rolled back and reset again here, waiting for each answer; a connection that still cannot be
 * made clean is closed, never reused.
 */
export async function returnClean(
  conn: PooledConnection<Connection>,
  clean: Promise<boolean>,
): Promise<void> {
  try {
    if (!(await clean)) {
      const connection = conn.connection;
      if (connection.closed) throw new Error("the connection is closed");
      if (connection.transactionStatus !== "idle") await conn.query("ROLLBACK");
      await conn.query(RESET_SESSION);
      if (connection.transactionStatus !== "idle") {
        throw new Error(`still in a transaction (${connection.transactionStatus}) after a reset`);
      }
    }
  } catch (error) {
    // Released with an error, the connection is closed instead of reused.
    return void conn.release(error ?? true);
  }
  conn.release();
}
