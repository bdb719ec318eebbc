// The HTTP face answers with the server's own text for every value, but edgepool's Connection
// parses the columns it knows (int4 → number, timestamptz → Date...). Until the Connection has
// an option to skip parsing, this transport wrapper hides the types from it: every column type
// OID in a RowDescription is swapped for a "ticket" (2^31 and up, an OID no parser knows), so
// every value arrives as the server's text, and `originalFields` swaps the real OIDs back.
//
// The same pass over the incoming bytes counts DataRow bytes, so the gateway can stop a query
// whose result outgrows the response limit before it is all buffered.

import { readInt32 } from "../src/_backend.ts";
import type { FieldDescription } from "../src/result.ts";
import type {
  ByteStream,
  StreamHandlers,
  Transport,
  TransportConnectOptions,
} from "../src/transport.ts";

const TICKET_BASE = 0x80000000;
const TICKET_SPAN = 0x7fffffff;
/** A RowDescription held back while incomplete may be at most this large. */
const MAX_HELD = 16 * 1024 * 1024;
const ROW_DESCRIPTION = 0x54; // T
const DATA_ROW = 0x44; // D

/** A row budget for the query running now: `exceeded` is called once past `limit` bytes. */
export interface RowBudget {
  limit: number;
  used: number;
  exceeded: () => void;
}

/** One connection's view of its incoming bytes: ticket table and row budget. */
export class RawTextTap {
  readonly #tickets = new Map<number, number>();
  #next = 0;
  /** Set by the gateway around a query; `null` when nobody counts. */
  budget: RowBudget | null = null;

  /** A transport that opens streams through `inner` and rewrites them for this tap. */
  transport(inner: Transport): Transport {
    return {
      name: inner.name,
      connect: async (options: TransportConnectOptions) =>
        new RewritingStream(await inner.connect(options), this),
    };
  }

  /** `fields` with their real type OIDs; the tickets are spent. */
  originalFields(fields: readonly FieldDescription[]): FieldDescription[] {
    return fields.map((field) => {
      const oid = this.#tickets.get(field.dataTypeID);
      if (oid === undefined) return field;
      this.#tickets.delete(field.dataTypeID);
      return { ...field, dataTypeID: oid };
    });
  }

  /** Swaps the type OID at `at` for a new ticket. */
  ticket(view: DataView, at: number): void {
    const ticket = TICKET_BASE + this.#next;
    this.#next = (this.#next + 1) % TICKET_SPAN;
    this.#tickets.set(ticket, view.getUint32(at));
    view.setUint32(at, ticket);
  }

  /**
   * Drops every ticket not spent: those of results nobody read (a query aborted, or a pool's
   * own reset). Called before each request, which spends all of its own (a batch's results are
   * read only once all have arrived, so no cap may drop any while it runs).
   */
  forget(): void {
    this.#tickets.clear();
  }

  /** Counts `bytes` of DataRow against the budget. */
  rows(bytes: number): void {
    const budget = this.budget;
    if (budget === null) return;
    budget.used += bytes;
    if (budget.used > budget.limit) {
      this.budget = null;
      budget.exceeded();
    }
  }
}

/**
 * Passes bytes through unchanged except for the type OIDs of RowDescriptions. Message
 * boundaries are tracked across chunks; only an incomplete header or an incomplete
 * RowDescription is held back until the rest arrives.
 */
class RewritingStream implements ByteStream {
  readonly #inner: ByteStream;
  readonly #tap: RawTextTap;
  #held: Uint8Array | null = null;
  /** Bytes of the current message still to pass through untouched. */
  #skip = 0;
  /** Set on a malformed frame: pass everything on and let the Connection report it. */
  #broken = false;

  constructor(inner: ByteStream, tap: RawTextTap) {
    this.#inner = inner;
    this.#tap = tap;
  }

  get encrypted(): boolean {
    return this.#inner.encrypted;
  }

  start(handlers: StreamHandlers): void {
    this.#inner.start({
      data: (chunk) => {
        const out = this.#broken ? chunk : this.#rewrite(chunk);
        if (out.length > 0) handlers.data(out);
      },
      close: (error) => handlers.close(error),
    });
  }

  write(data: Uint8Array): void {
    this.#inner.write(data);
  }

  close(): void {
    this.#inner.close();
  }

  /** Rewrites what is complete in `chunk` (in place) and returns the part to pass on. */
  #rewrite(chunk: Uint8Array): Uint8Array {
    let buf = chunk;
    if (this.#held !== null) {
      buf = new Uint8Array(this.#held.length + chunk.length);
      buf.set(this.#held);
      buf.set(chunk, this.#held.length);
      this.#held = null;
    }
    const n = buf.length;
    let pos = Math.min(this.#skip, n);
    this.#skip -= pos;
    while (pos < n) {
      if (n - pos < 5) return this.#hold(buf, pos);
      const type = buf[pos];
      const length = readInt32(buf, pos + 1);
      if (length < 4) {
        this.#broken = true;
        return buf;
      }
      const end = pos + 1 + length;
      if (type === ROW_DESCRIPTION) {
        if (end > n) {
          if (length > MAX_HELD) {
            this.#broken = true;
            return buf;
          }
          return this.#hold(buf, pos);
        }
        this.#retype(buf, pos + 5, end);
      } else if (type === DATA_ROW) {
        this.#tap.rows(length + 1);
      }
      if (end > n) {
        this.#skip = end - n;
        return buf;
      }
      pos = end;
    }
    return buf;
  }

  #hold(buf: Uint8Array, from: number): Uint8Array {
    this.#held = buf.slice(from);
    return buf.subarray(0, from);
  }

  /** Puts a ticket in place of each column's type OID in the RowDescription body at [start, end). */
  #retype(buf: Uint8Array, start: number, end: number): void {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const count = view.getInt16(start);
    let pos = start + 2;
    for (let i = 0; i < count; i++) {
      const nul = buf.indexOf(0, pos);
      // A malformed description is left for the Connection to reject.
      if (nul < 0 || nul + 19 > end) return;
      this.#tap.ticket(view, nul + 1 + 6);
      pos = nul + 19;
    }
  }
}
