// libpq's choice among the hosts of a list, shared by the client's multi-host connect
// (connect.ts) and the gateway's WebSocket face, which logs in upstream itself:
// target_session_attrs, decided from what a server says about itself (the gateway reads the same
// two settings from ParameterStatus messages), and load_balance_hosts' shuffle.

import type { TargetSessionAttrs } from "./url.ts";

/**
 * Why a server whose `in_hot_standby` is `standby` and whose `default_transaction_read_only`
 * (or `transaction_read_only`) is `readOnly` (each `"on"` or `"off"`) lacks the attributes
 * `want` (`null`: it has them). `prefer-standby` asks for a standby here; falling back to
 * another server is the caller's part.
 */
export function sessionRefusal(
  want: TargetSessionAttrs,
  standby: string,
  readOnly: string,
): string | null {
  const hot = standby === "on";
  switch (want) {
    case "any":
      return null;
    case "read-write":
      return hot
        ? "is a hot standby (read-only)"
        : readOnly === "on"
        ? "is read-only (default_transaction_read_only on)"
        : null;
    case "read-only":
      return hot || readOnly === "on" ? null : "takes writes (not read-only)";
    case "primary":
      return hot ? "is a hot standby, not a primary" : null;
    default: // standby, prefer-standby
      return hot ? null : "is not a hot standby";
  }
}

/** `load_balance_hosts=random`: a host list in random order (a Fisher–Yates shuffle). */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
