// Which parser reads each column on one connection: the connection's own `types` map, then
// edgepool's parsers, then, for a user-defined type edgepool does not know (an enum, a domain, a
// composite...), what pg_type says of it, looked up once per connection: an array of it comes
// back as a JS array, anything else as its text.
//
// Why a lookup after the query rather than at connect (postgres.js loads every array type when
// it connects): that costs every connection a round trip, and most never see a user type. Why
// not before decoding: by the time a RowDescription names an unknown type, the query's rows are
// on their way, and the queries behind it are on the wire already; a lookup can only go behind
// them. So the query's values for such columns are kept as text, the lookup goes out when the
// query completes (unless one for that type is under way or done), and the values are converted
// before the query resolves. The cost: the first query that sees a user type resolves one round
// trip later, after the queries pipelined behind it.

import { arrayOf } from "./_array.ts";
import { binaryDecoder, type BinaryPlan, sessionFlags } from "./_binary.ts";
import type { Statement } from "./_statement_cache.ts";
import type { TypeParser } from "./result.ts";
import { textParser } from "./types.ts";

/** OIDs from here on are user-defined (PostgreSQL's FirstNormalObjectId). */
const FIRST_USER_OID = 16384;

/** A row of the pg_type lookup, as text: its oid, and for an array, the parser's inputs. */
export type TypeRow = [oid: string, category: string, element: string, delimiter: string];

/** The lookup's SQL: an array type's element, a domain element read as its base type. */
export const TYPE_LOOKUP = "select t.oid, t.typcategory, coalesce(nullif(e.typbasetype, 0), " +
  "t.typelem), t.typdelim from pg_type t left join pg_type e on e.oid = t.typelem " +
  "where t.oid = any($1::oid[])";

export class ColumnTypes {
  readonly #own: ReadonlyMap<number, TypeParser> | undefined;
  readonly #bigint: boolean;
  readonly #lookup: (oids: number[]) => Promise<TypeRow[]>;
  /** Parsers picked so far, by OID; `undefined`: the text as is. */
  readonly #known = new Map<number, TypeParser | undefined>();
  /** Lookups under way, by OID. */
  readonly #pending = new Map<number, Promise<void>>();
  /** The session settings last seen, and the flags they give (see _binary.ts). */
  #session: Readonly<Record<string, string>> | null = null;
  #flags = 0;

  constructor(
    own: ReadonlyMap<number, TypeParser> | undefined,
    bigint: boolean,
    lookup: (oids: number[]) => Promise<TypeRow[]>,
  ) {
    this.#own = own;
    this.#bigint = bigint;
    this.#lookup = lookup;
  }

  /**
   * The parser of a column of type `oid`: a function, `undefined` for the text as is, or `null`
   * when the type must be looked up first ({@link whenKnown}).
   */
  parser(oid: number): TypeParser | undefined | null {
    const known = this.#known.get(oid);
    if (known !== undefined || this.#known.has(oid)) return known;
    if (oid >= FIRST_USER_OID && this.#own?.has(oid) !== true) return null;
    const parse = this.#own?.get(oid) ?? this.#builtinArray(oid) ??
      textParser(oid, { bigint: this.#bigint });
    this.#known.set(oid, parse);
    return parse;
  }

  /**
   * Which columns of `statement` (whose fields are known) to read in binary in a session with
   * settings `parameters`: those of a type with a binary decoder (see _binary.ts) and no parser
   * in the connection's own map. null: none.
   */
  binaryPlan(
    statement: Statement,
    parameters: Readonly<Record<string, string>>,
  ): BinaryPlan | null {
    if (parameters !== this.#session) {
      this.#session = parameters;
      this.#flags = sessionFlags(parameters);
    }
    const flags = this.#flags;
    const known = statement.plans[flags];
    if (known !== undefined) return known;
    const fields = statement.fields!;
    let plan: BinaryPlan | null = null;
    for (let i = 0; i < fields.length; i++) {
      const oid = fields[i].dataTypeID;
      if (this.#own?.has(oid) === true) continue;
      const decode = binaryDecoder(oid, this.#bigint, flags);
      if (decode === undefined) continue;
      plan ??= {
        formats: new Array(fields.length).fill(0),
        fields: fields.slice(),
        decoders: new Array(fields.length),
      };
      plan.formats[i] = 1;
      plan.fields[i] = { ...fields[i], format: "binary" };
      plan.decoders[i] = decode;
    }
    statement.plans[flags] = plan;
    return plan;
  }

  /** A built-in array of an element the connection's own map parses: that array's parser. */
  #builtinArray(oid: number): TypeParser | undefined {
    if (this.#own === undefined) return undefined;
    for (const [element, parse] of this.#own) {
      if (ARRAY_OF.get(element) === oid) return arrayOf(parse);
    }
    return undefined;
  }

  /**
   * Resolves once `oids` have been looked up (one query for those not under way). A lookup that
   * fails (the connection lost, a transaction aborted by a query pipelined behind) leaves them
   * unknown: their values keep their text this once, and the next query looks again.
   */
  whenKnown(oids: Iterable<number>): Promise<unknown> {
    const wanted: Promise<void>[] = [];
    const missing: number[] = [];
    for (const oid of oids) {
      if (this.#known.has(oid)) continue;
      const pending = this.#pending.get(oid);
      if (pending !== undefined) wanted.push(pending);
      else missing.push(oid);
    }
    if (missing.length > 0) {
      const done = this.#lookup(missing).then(
        (rows) => this.#learn(missing, rows),
        () => {},
      ).finally(() => {
        for (const oid of missing) this.#pending.delete(oid);
      });
      for (const oid of missing) this.#pending.set(oid, done);
      wanted.push(done);
    }
    return Promise.all(wanted);
  }

  #learn(oids: number[], rows: TypeRow[]): void {
    for (const oid of oids) this.#known.set(oid, undefined);
    for (const [oid, category, element, delimiter] of rows) {
      // Only commas are read by the array parser (box, alone among built-ins, uses ';').
      if (category !== "A" || delimiter !== ",") continue;
      const elementOid = Number(element);
      const parse = this.#own?.get(elementOid) ?? this.#known.get(elementOid) ??
        (elementOid < FIRST_USER_OID
          ? textParser(elementOid, { bigint: this.#bigint })
          : undefined);
      this.#known.set(Number(oid), arrayOf(parse));
    }
  }
}

// Built-in array types by element, as edgepool's own table has them.
export const ARRAY_OF = new Map<number, number>([
  [16, 1000],
  [17, 1001],
  [19, 1003],
  [20, 1016],
  [21, 1005],
  [23, 1007],
  [25, 1009],
  [26, 1028],
  [114, 199],
  [700, 1021],
  [701, 1022],
  [1042, 1014],
  [1043, 1015],
  [1082, 1182],
  [1114, 1115],
  [1184, 1185],
  [1700, 1231],
  [2950, 2951],
  [3802, 3807],
]);
