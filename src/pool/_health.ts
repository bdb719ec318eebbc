// The health check at checkout: a ping (`prePing`) and the `check` callback, on a connection
// that sat idle, before a waiter gets it. Bounded by the waiter's deadline, so that a ping to a
// dead server cannot hold the caller past its timeout.

import type { ResolvedOptions } from "./options.ts";

/**
 * How a health check ended: `"ok"`; `"cut short"` by the checkout deadline, or `"timed out"`
 * after `checkTimeout`, when the connection did not answer in time (it may never answer: the
 * pool closes it); or the error that shows it is bad.
 */
export type HealthOutcome = "ok" | "cut short" | "timed out" | { error: unknown };

/**
 * Pre-pings and `check`s `connection` (a ping alone for a connection only suspected), giving
 * up at `deadline` (clock time) or after `checkTimeout`, whichever comes first.
 */
export async function healthCheck<C>(
  connection: C,
  deadline: number,
  settings: Pick<ResolvedOptions<C>, "adapter" | "clock" | "prePing" | "check" | "checkTimeout">,
): Promise<HealthOutcome> {
  const clock = settings.clock;
  const controller = new AbortController();
  const left = Math.max(1, deadline - clock.now());
  const byDeadline = left <= settings.checkTimeout;
  const timer = clock.setTimeout(
    () =>
      controller.abort(
        new Error(
          byDeadline
            ? "health check cut short by the checkout deadline"
            : `health check timed out after ${settings.checkTimeout} ms (checkTimeout)`,
        ),
      ),
    byDeadline ? left : settings.checkTimeout,
  );
  // A `check` takes no signal, and a ping may not heed it: neither is waited for past the limit.
  const abandoned = new Promise<never>((_, reject) => {
    controller.signal.addEventListener("abort", () => reject(controller.signal.reason), {
      once: true,
    });
  });
  abandoned.catch(() => {});
  try {
    const ping = settings.prePing || settings.check === undefined;
    if (ping) await Promise.race([settings.adapter.ping(connection, controller.signal), abandoned]);
    if (settings.check) await Promise.race([settings.check(connection), abandoned]);
    return "ok";
  } catch (error) {
    if (controller.signal.aborted) return byDeadline ? "cut short" : "timed out";
    return { error: error ?? new Error("check failed") };
  } finally {
    clock.clearTimeout(timer);
  }
}
