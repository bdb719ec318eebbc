/**
 * The `sql` template tag: SQL text whose interpolated values travel as parameters (`$1`, `$2`,
 * ...), never spliced into the text, so a value cannot change the statement.
 *
 * @module
 */

/**
 * A statement made by the {@link sql} tag: pg's `{ text, values }` config object, so every
 * `query()` takes it as it is (`query(template)`), and `batch()` takes it as one statement.
 * Its text numbers the parameters `$1`, `$2`, ... in the order of `values`. Made only by the
 * tag (and `sql.unsafe`, `sql.id`): an object of the same shape made otherwise is a plain
 * value when interpolated, not a fragment.
 */
export interface SqlTemplate {
  /** The SQL text, with `$1`, `$2`, ... where the values go. */
  readonly text: string;
  /** The parameters, in the order of their numbers; `[]` when there are none. */
  readonly values: readonly unknown[];
}

/** The `sql` tag, with its helpers for text that is not a value. */
export interface SqlTag {
  /** Makes a template: each `${value}` a parameter, each `${fragment}` spliced in. */
  (strings: TemplateStringsArray, ...values: unknown[]): SqlTemplate;
  /**
   * Raw SQL text, spliced in as it is. Never give it text that came from outside the program:
   * nothing in it is escaped. Numbered placeholders (`$1`) in it are not renumbered.
   */
  unsafe(text: string): SqlTemplate;
  /**
   * A quoted identifier: each name in double quotes (inner double quotes doubled), several
   * names joined with `.` (`sql.id("app", "users")` is `"app"."users"`); a name containing a
   * dot is one identifier (`sql.id("a.b")` is `"a.b"`). Throws TypeError for no name, an empty
   * name, a name that is not a string, or a name holding a NUL character.
   */
  id(...names: string[]): SqlTemplate;
}

// Symbol.for, not a private field: two copies of this module (two bundles, two entry points)
// must still tell each other's fragments from values.
const PARTS: unique symbol = Symbol.for("edgepool.sql.parts") as never;

type Branded = SqlTemplate & { readonly [PARTS]: readonly string[] };

/** The text between the values of a template made here; `undefined` for any other value. */
function partsOf(value: unknown): readonly string[] | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const parts = (value as Partial<Branded>)[PARTS];
  return Array.isArray(parts) ? parts : undefined;
}

/** The template of `parts` (one more than `values`): `$n` between them. */
function make(parts: readonly string[], values: readonly unknown[]): SqlTemplate {
  let text = parts[0];
  for (let i = 1; i < parts.length; i++) text += "$" + i + parts[i];
  const template = { text, values: Object.freeze(values) };
  Object.defineProperty(template, PARTS, { value: Object.freeze(parts) });
  return Object.freeze(template);
}

/**
 * The template of a tagged template literal's `strings` and `values`, nested fragments
 * flattened. Throws TypeError when not called as a tag.
 *
 * @internal
 */
export function makeTemplate(
  strings: TemplateStringsArray,
  values: readonly unknown[],
): SqlTemplate {
  if (
    !Array.isArray(strings) || !Array.isArray((strings as { raw?: unknown }).raw) ||
    strings.length !== values.length + 1
  ) {
    throw new TypeError(
      "sql is a template tag: write sql`select ... where id = ${id}`, not sql(text); " +
        "for raw text use sql.unsafe(text)",
    );
  }
  const parts: string[] = [part(strings, 0)];
  const flat: unknown[] = [];
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    const inner = partsOf(value);
    if (inner === undefined) {
      flat.push(value);
      parts.push(part(strings, i + 1));
      continue;
    }
    // A fragment: its text joins the text around it, its values take the next numbers.
    const innerValues = (value as SqlTemplate).values;
    parts[parts.length - 1] += inner[0];
    for (let j = 0; j < innerValues.length; j++) {
      flat.push(innerValues[j]);
      parts.push(inner[j + 1]);
    }
    parts[parts.length - 1] += part(strings, i + 1);
  }
  return make(parts, flat);
}

/** The text of a template's string `i`: as JavaScript reads it, or as written when it cannot. */
function part(strings: TemplateStringsArray, i: number): string {
  // An escape JavaScript does not know (`\d` in a regular expression) leaves the cooked
  // string undefined; the text as written is what SQL wants then.
  return strings[i] ?? strings.raw[i];
}

function quoteName(name: unknown): string {
  if (typeof name !== "string") {
    throw new TypeError(`sql.id() takes strings, not ${name === null ? "null" : typeof name}`);
  }
  if (name === "") throw new TypeError("sql.id(): an identifier cannot be empty");
  if (name.includes("\0")) {
    throw new TypeError("sql.id(): an identifier cannot hold a NUL character");
  }
  return '"' + name.replaceAll('"', '""') + '"';
}

/**
 * Makes SQL templates: each `${value}` becomes a parameter (`$1`, `$2`, ...), sent apart from
 * the text, so `'; drop table x; --` in a value stays a value. An array is one parameter (an
 * array literal, as `query()` sends arrays), not a list. A `${fragment}` made by `sql` is
 * spliced in, its values renumbered; `sql.unsafe(text)` splices raw text and `sql.id(name)` a
 * quoted identifier. Run a template with `pool.sql\`...\``, `conn.sql\`...\``, or pass it to
 * `query()` or `batch()`. A template always runs on the extended protocol, as one statement,
 * even with no values.
 *
 * @example Values become parameters
 * ```ts
 * import { sql } from "@edgepool/edgepool";
 *
 * const id = 42;
 * const query = sql`select * from users where id = ${id} and tags && ${["a", "b"]}`;
 * if (query.text !== "select * from users where id = $1 and tags && $2") throw new Error();
 * if (JSON.stringify(query.values) !== '[42,["a","b"]]') throw new Error();
 * ```
 *
 * @example Fragments nest, identifiers are quoted
 * ```ts
 * import { sql } from "@edgepool/edgepool";
 *
 * const active = sql`active = ${true}`;
 * const query = sql`select ${sql.id("name")} from ${sql.id("app", "users")}
 * where ${active} and age > ${18} ${sql.unsafe("order by 1")}`;
 * const text = 'select "name" from "app"."users"\nwhere active = $1 and age > $2 order by 1';
 * if (query.text !== text) throw new Error(query.text);
 * if (JSON.stringify(query.values) !== "[true,18]") throw new Error();
 * ```
 *
 * @example Running one
 * ```ts ignore
 * import { createPool, sql } from "@edgepool/edgepool";
 * const pool = createPool(process.env.DATABASE_URL);
 * const { rows } = await pool.sql`select name from users where id = ${42}`;
 * await pool.query(sql`delete from users where id = ${42}`);
 * ```
 */
export const sql: SqlTag = /* @__PURE__ */ Object.assign(
  (strings: TemplateStringsArray, ...values: unknown[]): SqlTemplate =>
    makeTemplate(strings, values),
  {
    unsafe(text: string): SqlTemplate {
      if (typeof text !== "string") {
        throw new TypeError(
          `sql.unsafe() takes a string, not ${text === null ? "null" : typeof text}`,
        );
      }
      return make([text], []);
    },
    id(...names: string[]): SqlTemplate {
      if (names.length === 0) throw new TypeError("sql.id() needs at least one name");
      return make([names.map(quoteName).join(".")], []);
    },
  },
);

/**
 * The `.sql` method of pools and connections: the template of `strings` and `values` given to
 * `run` (their `query`); a tag misused rejects, as a bad query does, instead of throwing.
 *
 * @internal
 */
export function runTemplate<R>(
  strings: TemplateStringsArray,
  values: readonly unknown[],
  run: (template: SqlTemplate) => Promise<R>,
): Promise<R> {
  let template: SqlTemplate;
  try {
    template = makeTemplate(strings, values);
  } catch (error) {
    return Promise.reject(error);
  }
  return run(template);
}

/**
 * Whether `value` is a template made by {@link sql}.
 *
 * @internal
 */
export function isSqlTemplate(value: unknown): value is SqlTemplate {
  return partsOf(value) !== undefined;
}
