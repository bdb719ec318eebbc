// Frontend message encoding into one reusable, growing buffer. Strings are encoded in place
// with `encodeInto`, lengths are patched after the fact, so no intermediate strings or arrays
// are built per message.

const encoder = new TextEncoder();

/** Appends PostgreSQL frontend messages to a growing buffer. */
export class Writer {
  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;
  #start = -1;

  readonly #capacity: number;

  constructor(capacity = 1024) {
    this.#capacity = capacity;
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes written since the last `take()`. */
  get length(): number {
    return this.#pos;
  }

  #ensure(extra: number): void {
    const need = this.#pos + extra;
    if (need <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** Starts a message of type `type` (a char code), or an untyped one (startup) with -1. */
  begin(type: number): this {
    this.#ensure(5);
    if (type >= 0) this.#buf[this.#pos++] = type;
    this.#start = this.#pos;
    this.#pos += 4;
    return this;
  }

  /** Ends the current message by writing its length. */
  end(): this {
    this.#view.setInt32(this.#start, this.#pos - this.#start);
    this.#start = -1;
    return this;
  }

  byte(value: number): this {
    this.#ensure(1);
    this.#buf[this.#pos++] = value;
    return this;
  }

  int16(value: number): this {
    this.#ensure(2);
    this.#view.setInt16(this.#pos, value);
    this.#pos += 2;
    return this;
  }

  int32(value: number): this {
    this.#ensure(4);
    this.#view.setInt32(this.#pos, value);
    this.#pos += 4;
    return this;
  }

  /** Writes `value` as UTF-8 without a terminator and returns the number of bytes written. */
  string(value: string): number {
    // A UTF-16 code unit never takes more than 3 bytes of UTF-8.
    this.#ensure(value.length * 3);
    const start = this.#pos;
    const buf = this.#buf;
    const n = value.length;
    let i = 0;
    // ASCII fast path: most identifiers, numbers and SQL are plain ASCII.
    for (; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c > 0x7f) break;
      buf[this.#pos++] = c;
    }
    if (i < n) {
      this.#pos += encoder.encodeInto(value.slice(i), buf.subarray(this.#pos)).written;
    }
    return this.#pos - start;
  }

  /** Writes `value` as a NUL-terminated UTF-8 string. */
  cstring(value: string): this {
    this.string(value);
    this.byte(0);
    return this;
  }

  /** Writes `value`'s bytes as they are. */
  bytes(value: Uint8Array): this {
    this.#ensure(value.length);
    this.#buf.set(value, this.#pos);
    this.#pos += value.length;
    return this;
  }

  /**
   * Writes a length-prefixed value (a Bind parameter, SASL data): text as UTF-8, bytes (a
   * binary parameter) as they are, -1 for null.
   */
  value(value: string | Uint8Array | null): this {
    if (value === null) return this.int32(-1);
    if (typeof value !== "string") return this.int32(value.length).bytes(value);
    this.#ensure(4);
    const at = this.#pos;
    this.#pos += 4;
    const written = this.string(value);
    this.#view.setInt32(at, written);
    return this;
  }

  /** Inserts `bytes` (whole messages) at `at`, between messages written before. */
  insert(at: number, bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    this.#buf.copyWithin(at + bytes.length, at, this.#pos);
    this.#buf.set(bytes, at);
    this.#pos += bytes.length;
  }

  /**
   * Returns a copy of everything written, or of its first `length` bytes (keeping the rest), and
   * resets the buffer for reuse.
   */
  take(length = this.#pos): Uint8Array {
    const out = this.#buf.slice(0, length);
    if (length < this.#pos) {
      this.#buf.copyWithin(0, length, this.#pos);
      this.#pos -= length;
      return out;
    }
    this.#pos = 0;
    // A large statement or parameter grew the buffer: do not keep that for the connection's life.
    if (this.#buf.length > 65536) {
      this.#buf = new Uint8Array(this.#capacity);
      this.#view = new DataView(this.#buf.buffer);
    }
    return out;
  }
}
