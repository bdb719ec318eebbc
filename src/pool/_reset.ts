// Making a returned connection fit for the next user: roll back (or commit) what its last user
// left open, run the `reset` callback, and insist that it ends idle.

import type { PoolAdapter, PoolTransactionStatus } from "./adapter.ts";
import type { Clock } from "./_clock.ts";
import type { ResetOnReturn } from "./options.ts";

/** What `resetForReuse` needs. */
export interface ResetSettings<C> {
  adapter: PoolAdapter<C>;
  resetOnReturn: ResetOnReturn;
  reset: ((connection: C) => void | Promise<void>) | undefined;
  clock: Clock;
  /** How long the ROLLBACK (or COMMIT) may take: a connection that does not answer is closed. */
  checkTimeout: number;
}

/**
 * Resets `connection`, reporting each step through `done`. Throws when it cannot be made idle:
 * the caller closes it then. With `resetOnReturn: "none"` an open transaction is not touched,
 * so the connection is refused (it would carry its last user's transaction).
 */
export async function resetForReuse<C>(
  connection: C,
  status: PoolTransactionStatus,
  settings: ResetSettings<C>,
  done: (action: "rollback" | "commit" | "callback") => void,
): Promise<void> {
  const { adapter, resetOnReturn, reset, clock, checkTimeout } = settings;
  if (status !== "idle" || adapter.isBusy(connection)) {
    if (resetOnReturn === "none") throw new Error(`returned with transaction status ${status}`);
    // A failed transaction cannot commit; a busy connection may be mid-BEGIN: roll back both.
    const action = status === "transaction" && resetOnReturn === "commit" ? "commit" : "rollback";
    const controller = new AbortController();
    const timer = clock.setTimeout(() => controller.abort(), checkTimeout);
    try {
      await adapter.query(connection, action === "commit" ? "COMMIT" : "ROLLBACK", undefined, {
        signal: controller.signal,
      });
    } finally {
      clock.clearTimeout(timer);
    }
    done(action);
  }
  if (reset !== undefined) {
    await reset(connection);
    done("callback");
  }
  const after = adapter.transactionStatus(connection);
  if (after !== "idle" || adapter.isBusy(connection)) {
    throw new Error(`still not idle after reset (status ${after})`);
  }
}
