// The health check at checkout: a ping (`prePing`) and the `check` callback, on a connection
// that sat idle, before a waiter gets it. Bounded by the waiter's deadline, so that a ping to a
// dead server cannot hold the caller past its timeout.

import type { ResolvedOptions } from "./options.ts";

/**
 * How a health check ended: `"ok"`; `"cut short"` by the deadline, so the connection is not
 * known to be bad; or the error that shows it is.
 */
export type HealthOutcome = "ok" | "cut short" | { error: unknown };

/** Pre-pings and `check`s `connection`, giving up at `deadline` (clock time). */
export async function healthCheck<C>(
  connection: C,
  deadline: number,
  settings: Pick<ResolvedOptions<C>, "adapter" | "clock" | "prePing" | "check">,
): Promise<HealthOutcome> {
  const clock = settings.clock;
  const controller = new AbortController();
  const timer = clock.setTimeout(
    () => controller.abort(new Error("health check cut short by the checkout deadline")),
    Math.max(1, deadline - clock.now()),
  );
  try {
    if (settings.prePing) await settings.adapter.ping(connection, controller.signal);
    if (settings.check) await settings.check(connection);
    return "ok";
  } catch (error) {
    return controller.signal.aborted ? "cut short" : { error: error ?? new Error("check failed") };
  } finally {
    clock.clearTimeout(timer);
  }
}
