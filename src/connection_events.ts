/**
 * What a `Connection` reports: its transaction status and the events it emits.
 *
 * @module
 */

import type { PostgresNotice } from "./errors.ts";

/** Transaction state from the last ReadyForQuery: outside, inside, or inside a failed one. */
export type TransactionStatus = "idle" | "transaction" | "failed";

/** A NotificationResponse, delivered to `notification` listeners (LISTEN/NOTIFY). */
export interface Notification {
  /** Process ID of the notifying backend. */
  processId: number;
  /** Channel name. */
  channel: string;
  /** Payload string ("" when none). */
  payload: string;
}

/** The events of a {@link Connection} and what each listener receives. */
export interface ConnectionEvents {
  /** A NoticeResponse (warnings, `RAISE NOTICE`): its fields. */
  notice: PostgresNotice;
  /** A NotificationResponse from LISTEN/NOTIFY. */
  notification: Notification;
  /** A ParameterStatus: a reported setting changed (`TimeZone`, `application_name`, ...). */
  parameter: { name: string; value: string };
  /** The connection closed: `undefined` after `close()`, the error when it broke. Fires once. */
  close: Error | undefined;
}
