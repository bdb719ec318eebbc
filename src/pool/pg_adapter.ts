/**
 * A {@link PoolAdapter} for node-postgres-style clients — `pg.Client` and
 * `@neondatabase/serverless`'s `Client` — so edgepool's pools can pool them: reset on return
 * from the real transaction status, ping, close, and disconnect detection.
 *
 * @module
 */

import type { CommandTag, FieldDescription, QueryResult } from "../result.ts";
import type { PoolAdapter, PoolTransactionStatus } from "./adapter.ts";

/** The parts of a node-postgres-style client the adapter uses (pg 8, Neon serverless 1.x). */
export interface PgClientLike {
  /** Runs a query given as a config object. */
  query(
    config: { text: string; values?: unknown[]; rowMode?: "array" },
  ): Promise<{
    command: string;
    rowCount: number | null;
    rows: unknown[];
    fields: {
      name: string;
      tableID: number;
      columnID: number;
      dataTypeID: number;
      dataTypeSize: number;
      dataTypeModifier: number;
      format: string;
    }[];
  }>;
  /** Closes the client. */
  end(): Promise<void>;
  /** Subscribes to the client's end of life. */
  on(event: "end" | "error", listener: (error?: Error) => void): unknown;
  /** pg's protocol connection: an event emitter of backend messages, and its socket. */
  connection?: {
    on(event: "readyForQuery", listener: (message: { status?: string }) => void): unknown;
    stream?: { destroy?(): void };
  };
  /** pg: `false` while a query is in flight. */
  readyForQuery?: boolean;
}

interface ClientState {
  status: PoolTransactionStatus;
  closed: boolean;
  listeners: Set<(error?: Error) => void>;
  /** Called on the next ReadyForQuery or on close, then cleared. */
  ready: (() => void)[];
}

const STATUS: Record<string, PoolTransactionStatus> = { I: "idle", T: "transaction", E: "failed" };

/**
 * Makes an adapter for pg-compatible clients. The transaction status comes from the
 * ReadyForQuery messages the client's protocol connection emits; `onClose` also keeps an
 * `error` listener on every pooled client, so an idle client's error never crashes Node.
 *
 * @example
 * ```ts ignore
 * import { Client } from "@neondatabase/serverless";
 * import { pgClientAdapter, QueuePool } from "@edgepool/edgepool";
 * const pool = new QueuePool(async () => {
 *   const client = new Client(url);
 *   await client.connect();
 *   return client;
 * }, { adapter: pgClientAdapter() });
 * ```
 */
export function pgClientAdapter<C extends PgClientLike>(): PoolAdapter<C> {
  const states = new WeakMap<C, ClientState>();
  const state = (client: C): ClientState => {
    let found = states.get(client);
    if (found === undefined) {
      const created: ClientState = {
        status: "idle",
        closed: false,
        listeners: new Set(),
        ready: [],
      };
      found = created;
      states.set(client, created);
      const wake = () => {
        for (const resolve of created.ready.splice(0)) resolve();
      };
      client.connection?.on("readyForQuery", (message) => {
        created.status = STATUS[message?.status ?? ""] ?? "unknown";
        wake();
      });
      const closed = (error?: Error) => {
        if (created.closed) return;
        created.closed = true;
        created.status = "unknown";
        wake();
        for (const listener of created.listeners) listener(error);
      };
      client.on("end", () => closed());
      client.on("error", (error) => closed(error));
    }
    return found;
  };
  return {
    async query<Row>(client: C, sql: string, params?: readonly unknown[], options?: {
      signal?: AbortSignal;
      rowMode?: "object" | "array";
    }): Promise<QueryResult<Row>> {
      const s = state(client);
      options?.signal?.throwIfAborted();
      let result;
      try {
        result = await client.query({
          text: sql,
          values: params === undefined ? undefined : [...params],
          rowMode: options?.rowMode === "array" ? "array" : undefined,
        });
      } catch (error) {
        // pg rejects on ErrorResponse, before the ReadyForQuery that carries the new
        // transaction status; wait for it so the status is current when the caller sees the
        // error.
        if (!s.closed && client.connection !== undefined && client.readyForQuery === false) {
          await new Promise<void>((resolve) => s.ready.push(resolve));
        }
        throw error;
      }
      return {
        command: (result.command ?? "") as CommandTag,
        rowCount: result.rowCount ?? null,
        rows: result.rows as Row[],
        fields: (result.fields ?? []).map((f): FieldDescription => ({
          name: f.name,
          tableID: f.tableID,
          columnID: f.columnID,
          dataTypeID: f.dataTypeID,
          dataTypeSize: f.dataTypeSize,
          dataTypeModifier: f.dataTypeModifier,
          format: f.format === "binary" ? "binary" : "text",
        })),
      };
    },
    async close(client, force) {
      const s = state(client);
      if (force) client.connection?.stream?.destroy?.();
      if (!s.closed) await client.end().catch(() => {});
      s.closed = true;
    },
    transactionStatus: (client) => state(client).status,
    isClosed: (client) => state(client).closed,
    isBusy: (client) => client.readyForQuery === false,
    async ping(client) {
      await client.query({ text: "select 1" });
    },
    isDisconnect(error) {
      const e = error as { code?: unknown; severity?: unknown; message?: unknown } | null;
      if (e?.severity === "FATAL" || e?.severity === "PANIC") return true;
      // Any other server error (08P01 included) fails its query and leaves the session.
      if (typeof e?.severity === "string") return false;
      const code = typeof e?.code === "string" ? e.code : "";
      if (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03") {
        return true;
      }
      // pg reports a lost socket with messages, not codes.
      const text = typeof e?.message === "string" ? e.message : "";
      return /Connection terminated|Client has encountered a connection error|not queryable|ECONNRESET|socket|WebSocket/i
        .test(text);
    },
    onClose(client, listener) {
      const s = state(client);
      s.listeners.add(listener);
      return () => s.listeners.delete(listener);
    },
  };
}
