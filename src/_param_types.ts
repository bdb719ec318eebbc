// Serializers of parameters by type (`serializers`): which type the server gives each `$n` of a
// statement, learned once per connection and SQL text, and the values serialized by it.
//
// Why a Describe: a parameter goes untyped (OID 0 in Parse) and the server infers its type from
// the statement, so only the server knows it. Parse + Describe statement + Sync answers with
// ParameterDescription; the query's Bind can only be written after that answer, so the query
// waits one round trip the first time a connection sees the text, and never again (the OIDs are
// kept per text, least recently used dropped). Connections and queries without serializers never
// describe anything. How a query that waits keeps its place among the queries pipelined behind
// it is the connection's business (see `Connection`: its bytes go where it was issued).

import { readParameterTypes } from "./_backend.ts";
import { ARRAY_OF, type ColumnTypes } from "./_column_types.ts";
import { PendingQuery } from "./_query.ts";
import { PostgresError } from "./errors.ts";
import type { QueryResult, RowMode, TypeParsers } from "./result.ts";
import { serializeArray, serializeParam } from "./types.ts";

/**
 * A parameter's serializer: turns a value (never `null` or `undefined`: those are NULL) into
 * the text PostgreSQL reads for the parameter's type.
 */
// deno-lint-ignore no-explicit-any
export type ParamSerializer = (value: any) => string;

/** Serializers by type OID, as `serializers` takes them: an object or a Map. */
export type SerializersOption =
  | { readonly [oid: number]: ParamSerializer }
  | ReadonlyMap<number, ParamSerializer>;

/** Validated serializers by OID. */
export type Serializers = ReadonlyMap<number, ParamSerializer>;

/** SQL texts whose parameter types a connection keeps. */
const MAX_TEXTS = 256;

/**
 * Validates `serializers` (`where` names it in messages: `options.serializers`); `undefined`
 * when there are none.
 */
export function checkSerializers(value: unknown, where: string): Serializers | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(
      `${where} must be an object or a Map of type OID to serializer function (value) => ` +
        `text, not ${value === null ? "null" : Array.isArray(value) ? "an array" : typeof value}`,
    );
  }
  const map = new Map<number, ParamSerializer>();
  const entries = value instanceof Map
    ? [...value].map(([key, serialize]) => [String(key), serialize])
    : Object.entries(value);
  for (const [key, serialize] of entries) {
    const oid = Number(key);
    if (!/^[1-9][0-9]{0,9}$/.test(key) || oid > 0xffffffff) {
      throw new TypeError(
        `${where} has the key ${JSON.stringify(key)}, which is not a type OID (an integer ` +
          "from 1 to 4294967295)",
      );
    }
    if (typeof serialize !== "function") {
      throw new TypeError(
        `${where}[${key}] must be a serializer function (value) => text, not ${
          serialize === null ? "null" : typeof serialize
        }`,
      );
    }
    map.set(oid, serialize as ParamSerializer);
  }
  return map.size === 0 ? undefined : map;
}

// Built-in array types to their element types: the table the parsers read arrays with.
const ELEMENT_OF = new Map<number, number>(
  [...ARRAY_OF].map(([element, array]) => [array, element]),
);

/**
 * The text of each parameter: by the serializer of its type (`oids`, from the server), the
 * query's own (`own`) before the connection's (`shared`), entry by entry; for a built-in array
 * type without one, the element type's serializer on each element; otherwise edgepool's
 * `serializeParam`. `null` and `undefined` are NULL, serializers not asked. Throws TypeError
 * (RangeError for what `serializeParam` refuses so) naming the parameter, `$n`.
 */
export function encodeTypedParams(
  params: readonly unknown[],
  oids: readonly number[],
  own: Serializers | undefined,
  shared: Serializers | undefined,
): (string | null)[] {
  const values: (string | null)[] = new Array(params.length);
  for (let i = 0; i < params.length; i++) {
    const value = params[i];
    if (value === null || value === undefined) {
      values[i] = null;
      continue;
    }
    const oid = oids[i] ?? 0;
    const serialize = own?.get(oid) ?? shared?.get(oid);
    try {
      if (serialize !== undefined) {
        values[i] = checked(serialize, oid, value);
        continue;
      }
      const element = Array.isArray(value) ? ELEMENT_OF.get(oid) : undefined;
      const each = element === undefined ? undefined : own?.get(element) ?? shared?.get(element);
      values[i] = each === undefined
        ? serializeParam(value)
        : serializeArray(value as unknown[], (item) => checked(each, element!, item));
    } catch (error) {
      const message = `Query parameter $${i + 1}: ${
        error instanceof Error ? error.message : String(error)
      }`;
      throw error instanceof RangeError && !(error instanceof SerializerError)
        ? new RangeError(message, { cause: error })
        : new TypeError(message, { cause: error instanceof SerializerError ? error.cause : error });
    }
  }
  return values;
}

/** A serializer failed; `cause`: what it threw. */
class SerializerError extends Error {}

/** `serialize(value)`, which must be a string that UTF-8 can carry. */
function checked(serialize: ParamSerializer, oid: number, value: unknown): string {
  let text: unknown;
  try {
    text = serialize(value);
  } catch (error) {
    throw new SerializerError(
      `the serializer of type ${oid} threw: ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  }
  if (typeof text !== "string") {
    throw new SerializerError(
      `the serializer of type ${oid} returned ${text === null ? "null" : typeof text}, ` +
        "not a string",
    );
  }
  return serializeParam(text)!; // a lone surrogate is refused as in any string parameter
}

/** A query that waits for its statement's parameter types, with what it needs to be sent. */
export interface Waiter {
  /** Stands in the connection's queue where the query goes, until it is sent. */
  placeholder: PendingQuery;
  /** Where its bytes go in the connection's writer. */
  at: number;
  sql: string;
  params: readonly unknown[];
  own: Serializers | undefined;
  rowMode: RowMode;
  types: TypeParsers | undefined;
  signal: AbortSignal | undefined;
  resolve: (result: QueryResult) => void;
  reject: (error: unknown) => void;
}

/**
 * Parse (unless the statement is prepared) + Describe statement + Sync of one SQL text, queued as
 * any query: collects the ParameterDescription; its rows' description is not wanted.
 */
export class Describe extends PendingQuery {
  /** The parameter types, once ParameterDescription arrived. */
  oids: number[] | null = null;
  /** The queries that wait for it, in the order they were issued. */
  readonly waiters: Waiter[] = [];
  /** Others told when it ends: with `null`, or its error. */
  readonly listeners: ((error: unknown) => void)[] = [];

  constructor(
    columns: ColumnTypes,
    resolve: (result: QueryResult) => void,
    reject: (error: unknown) => void,
  ) {
    super("array", undefined, columns, true, resolve, reject);
  }

  override message(type: number, buf: Uint8Array, start: number, end: number): boolean {
    switch (type) {
      case 0x74: // t: ParameterDescription
        this.oids = readParameterTypes(buf, start, end);
        return true;
      case 0x54: // T: RowDescription
      case 0x6e: // n: NoData
        return true;
      default:
        return super.message(type, buf, start, end);
    }
  }
}

/** Parameter types learned for a text, and when they were last used. */
interface Known {
  oids: readonly number[];
  used: number;
}

/** One connection's parameter types by SQL text, and the describes under way. */
export class ParamTypes {
  /** SQL → parameter types. */
  readonly #known = new Map<string, Known>();
  readonly #describing = new Map<string, Describe>();
  /** Counts uses, to tell the least recently used. */
  #clock = 0;

  /** The parameter types of `sql`, if known. */
  get(sql: string): readonly number[] | undefined {
    const known = this.#known.get(sql);
    if (known === undefined) return undefined;
    // A stamp, not a reinsertion: a Map's delete and set on every query cost several times
    // what serializing the parameters does. Evicting scans instead, once per describe.
    known.used = ++this.#clock;
    return known.oids;
  }

  /** The describe of `sql` under way, if any. */
  describing(sql: string): Describe | undefined {
    return this.#describing.get(sql);
  }

  /** `describe` is under way for `sql`. */
  started(sql: string, describe: Describe): void {
    this.#describing.set(sql, describe);
  }

  /** The describe of `sql` ended: with its parameter types, or `null` when it failed. */
  ended(sql: string, oids: readonly number[] | null): void {
    this.#describing.delete(sql);
    if (oids === null) return;
    const known = this.#known;
    if (known.size >= MAX_TEXTS && !known.has(sql)) {
      let oldest = "", least = Infinity;
      for (const [text, { used }] of known) if (used < least) [oldest, least] = [text, used];
      known.delete(oldest);
    }
    known.set(sql, { oids, used: ++this.#clock });
  }

  /**
   * A query of `sql`, serialized by its learned types, failed with `error`: when the error may
   * come from types that changed (the statement gone, a table altered, a value the type no
   * longer reads), the next query of `sql` describes it again.
   */
  failed(sql: string, error: unknown): void {
    if (!(error instanceof PostgresError)) return;
    const kind = error.code.slice(0, 2);
    // 22: data exception, 26: no such statement, 42: undefined or mismatched types and
    // relations, 0A: a cached plan whose types changed.
    if (kind === "22" || kind === "26" || kind === "42" || kind === "0A") {
      this.#known.delete(sql);
    }
  }
}
