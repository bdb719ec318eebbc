/**
 * A Prisma driver adapter over an edgepool pool, for Prisma 6 (6.16 and later, with
 * `engineType = "client"`) and Prisma 7: `new PrismaClient({ adapter: new PrismaEdgepool(pool) })`.
 *
 * @example
 * ```ts ignore
 * import { createPool } from "@edgepool/edgepool";
 * import { PrismaEdgepool } from "@edgepool/edgepool/prisma";
 * import { PrismaClient } from "./generated/client.ts";
 *
 * const pool = createPool("postgres://app:secret@localhost/app");
 * const prisma = new PrismaClient({ adapter: new PrismaEdgepool(pool) });
 * console.log(await prisma.user.findMany());
 * await prisma.$disconnect();
 * await pool.close();
 * ```
 *
 * @module
 */

import { type Connection, ConnectionError, createPool, PostgresError } from "../mod.ts";
import type { Pool } from "../src/pool/pool.ts";
import type { PooledConnection } from "../src/pool/pooled_connection.ts";
import type { QueryResult } from "../src/result.ts";
import {
  type ColumnKind,
  columnKinds,
  isUserType,
  mapArg,
  queryTypes,
  TYPE_NAMES,
  USER_TYPE,
} from "./_columns.ts";
import type {
  ConnectionInfo,
  IsolationLevel,
  SqlDriverAdapter,
  SqlQuery,
  SqlQueryable,
  SqlResultSet,
  Transaction,
  TransactionOptions,
} from "./types.ts";

export type {
  ArgType,
  ColumnType,
  ConnectionInfo,
  IsolationLevel,
  SqlDriverAdapter,
  SqlQuery,
  SqlQueryable,
  SqlResultSet,
  Transaction,
  TransactionOptions,
} from "./types.ts";

/** Options of {@link PrismaEdgepool}. */
export interface PrismaEdgepoolOptions {
  /**
   * The schema Prisma's models live in, when it is not the first on the `search_path`: what
   * Prisma's `schema` option of its own PostgreSQL adapter does. Default: none.
   */
  schema?: string;
  /**
   * The major version of the Prisma client that uses the adapter: Prisma 6 reads Bytes columns
   * as arrays of numbers, Prisma 7 as Uint8Array. Default: `7`.
   */
  prisma?: 6 | 7;
}

const ADAPTER_NAME = "edgepool";

const KINDS = { 6: columnKinds(6), 7: columnKinds(7) };

/** What Prisma's engine reads from a {@link DriverAdapterError}: a `kind` and its fields. */
type MappedError = { kind: string; [field: string]: unknown };

/**
 * The error Prisma's engine turns into its own (a unique violation into P2002, and so on):
 * Prisma knows it by its name and the mapped error in `cause`, whichever copy of
 * @prisma/driver-adapter-utils it loaded.
 */
class DriverAdapterError extends Error {
  override name = "DriverAdapterError";
  override cause: MappedError & { originalCode?: string; originalMessage?: string };

  constructor(cause: DriverAdapterError["cause"]) {
    super(cause.kind === "postgres" ? String(cause.message) : cause.kind);
    this.cause = cause;
  }
}

/**
 * Prisma's driver adapter factory over an edgepool pool: pass it to `new PrismaClient({ adapter
 * })`. Given a pool, it leaves the pool open when Prisma disconnects (the pool is yours to
 * close); given a URL, it makes a pool with `createPool(url)` and closes it on `$disconnect()`.
 *
 * Interactive transactions (`prisma.$transaction(async (tx) => ...)`) each check out one
 * connection for their whole life and return it when Prisma commits or rolls back; the
 * pool's reset on return rolls back anything left open.
 *
 * Values reach Prisma's engine exact: timestamps as the server's text moved to UTC, with all
 * six fractional digits (Prisma then makes a JS Date of it, which keeps milliseconds: select
 * `at::text` to see all six), JSON as the server's text (numbers past 2^53, the server's key
 * order: what Prisma's `JSON.parse` then does with them is Prisma's), BigInt, Decimal, Bytes,
 * arrays and enums.
 *
 * It has the shape of Prisma's `SqlDriverAdapterFactory`, and `connect()` gives an adapter of
 * the shape of its `SqlDriverAdapter`: those types are written out in this module, under
 * Prisma's names, so that edgepool needs nothing from Prisma's packages.
 *
 * @example
 * ```ts ignore
 * import { PrismaEdgepool } from "@edgepool/edgepool/prisma";
 * import { PrismaClient } from "./generated/client.ts";
 *
 * const prisma = new PrismaClient({
 *   adapter: new PrismaEdgepool("postgres://app:secret@localhost/app"),
 * });
 * const users = await prisma.user.findMany({ where: { active: true } });
 * await prisma.$disconnect(); // closes the pool it made
 * ```
 */
export class PrismaEdgepool {
  /** The database family, for Prisma. */
  readonly provider = "postgres";
  /** The adapter's name, for Prisma. */
  readonly adapterName: string = ADAPTER_NAME;
  readonly #source: Pool<Connection> | string | URL;
  readonly #options: PrismaEdgepoolOptions;

  /**
   * Makes the adapter factory; nothing connects until Prisma asks.
   *
   * @param poolOrUrl A pool of edgepool connections (`createPool(url)`, a `QueuePool`...), or a
   *   `postgres://` URL to make one from.
   * @param options See {@link PrismaEdgepoolOptions}.
   */
  constructor(poolOrUrl: Pool<Connection> | string | URL, options: PrismaEdgepoolOptions = {}) {
    const isPool = typeof poolOrUrl === "object" && poolOrUrl !== null &&
      typeof (poolOrUrl as Pool<Connection>).connect === "function";
    if (!isPool && typeof poolOrUrl !== "string" && !(poolOrUrl instanceof URL)) {
      throw new TypeError("PrismaEdgepool: poolOrUrl must be an edgepool Pool or a URL");
    }
    this.#source = poolOrUrl;
    this.#options = options;
  }

  /** Gives Prisma its adapter; Prisma calls it once per client, on first use. */
  connect(): Promise<SqlDriverAdapter> {
    const source = this.#source;
    if (typeof source === "string" || source instanceof URL) {
      const pool = createPool(source);
      return Promise.resolve(new EdgepoolAdapter(pool, this.#options, () => pool.close()));
    }
    return Promise.resolve(new EdgepoolAdapter(source, this.#options, null));
  }
}

/** What runs statements: the pool, or a transaction's connection. */
type Runner = Pick<PooledConnection<Connection>, "query">;

class EdgepoolQueryable implements SqlQueryable {
  readonly provider = "postgres";
  readonly adapterName: string = ADAPTER_NAME;
  readonly #runner: Runner;
  readonly #kinds: Map<number, ColumnKind>;

  constructor(runner: Runner, prisma: 6 | 7) {
    this.#runner = runner;
    this.#kinds = KINDS[prisma];
  }

  async queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    const result = await this.run(query);
    const kinds = result.fields.map((f) => columnKind(this.#kinds, f.dataTypeID));
    const rows = result.rows as unknown[][];
    for (let c = 0; c < kinds.length; c++) {
      const convert = kinds[c].convert;
      if (convert === undefined) continue;
      for (const row of rows) {
        const value = row[c];
        if (value !== null) row[c] = convert(value);
      }
    }
    return {
      columnNames: result.fields.map((f) => f.name),
      columnTypes: kinds.map((k) => k.type),
      rows,
    };
  }

  async executeRaw(query: SqlQuery): Promise<number> {
    return (await this.run(query)).rowCount ?? 0;
  }

  protected async run(query: SqlQuery): Promise<QueryResult<unknown[]>> {
    // No arguments: no parameter list, as pg does, so that the statement goes by the simple
    // protocol. With one, even empty, edgepool uses the extended protocol, which takes a
    // single statement: `$executeRawUnsafe("create type ...; create table ...")` would fail.
    const args = query.args.length === 0
      ? undefined
      : query.args.map((arg, i) => mapArg(arg, query.argTypes[i]));
    try {
      return await this.#runner.query<unknown[]>(query.sql, args, {
        rowMode: "array",
        types: queryTypes,
      });
    } catch (error) {
      throw adapterError(error);
    }
  }
}

class EdgepoolTransaction extends EdgepoolQueryable implements Transaction {
  // Prisma's engine sends COMMIT and ROLLBACK itself, then calls commit() or rollback().
  readonly options: TransactionOptions = { usePhantomQuery: false };
  readonly #connection: PooledConnection<Connection>;

  constructor(connection: PooledConnection<Connection>, prisma: 6 | 7) {
    super(connection, prisma);
    this.#connection = connection;
  }

  commit(): Promise<void> {
    return this.#connection.close();
  }

  rollback(): Promise<void> {
    return this.#connection.close();
  }

  async createSavepoint(name: string): Promise<void> {
    await this.#statement(`SAVEPOINT ${name}`);
  }

  async rollbackToSavepoint(name: string): Promise<void> {
    await this.#statement(`ROLLBACK TO SAVEPOINT ${name}`);
  }

  async releaseSavepoint(name: string): Promise<void> {
    await this.#statement(`RELEASE SAVEPOINT ${name}`);
  }

  #statement(sql: string): Promise<number> {
    return this.executeRaw({ sql, args: [], argTypes: [] });
  }
}

const ISOLATION_LEVELS = new Set<string>([
  "READ UNCOMMITTED",
  "READ COMMITTED",
  "REPEATABLE READ",
  "SERIALIZABLE",
]);

class EdgepoolAdapter extends EdgepoolQueryable implements SqlDriverAdapter {
  readonly #pool: Pool<Connection>;
  readonly #options: PrismaEdgepoolOptions;
  readonly #dispose: (() => Promise<void>) | null;

  constructor(
    pool: Pool<Connection>,
    options: PrismaEdgepoolOptions,
    dispose: (() => Promise<void>) | null,
  ) {
    super(pool, options.prisma ?? 7);
    this.#pool = pool;
    this.#options = options;
    this.#dispose = dispose;
  }

  async startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction> {
    if (isolationLevel !== undefined && !ISOLATION_LEVELS.has(isolationLevel)) {
      throw new DriverAdapterError({ kind: "InvalidIsolationLevel", level: isolationLevel });
    }
    let connection: PooledConnection<Connection>;
    try {
      connection = await this.#pool.connect();
    } catch (error) {
      throw adapterError(error);
    }
    try {
      // On the checked-out connection, which keeps the transaction until commit() or
      // rollback(): the pool's own query() refuses a statement that leaves one open
      // (TRANSACTION_LEFT_OPEN). One statement, one round trip: BEGIN with its isolation level.
      const begin = isolationLevel ? `BEGIN ISOLATION LEVEL ${isolationLevel}` : "BEGIN";
      await connection.query(begin);
    } catch (error) {
      await connection.close();
      throw adapterError(error);
    }
    return new EdgepoolTransaction(connection, this.#options.prisma ?? 7);
  }

  async executeScript(script: string): Promise<void> {
    // No parameter list, not even an empty one: only the simple protocol runs every statement
    // of the script, in order (edgepool sends a query with a parameter list, [] included, by
    // the extended protocol, which takes one statement).
    try {
      await this.#pool.query(script);
    } catch (error) {
      throw adapterError(error);
    }
  }

  getConnectionInfo(): ConnectionInfo {
    const schemaName = this.#options.schema;
    return schemaName === undefined
      ? { supportsRelationJoins: true }
      : { schemaName, supportsRelationJoins: true };
  }

  async dispose(): Promise<void> {
    await this.#dispose?.();
  }
}

function columnKind(kinds: Map<number, ColumnKind>, oid: number): ColumnKind {
  const kind = kinds.get(oid);
  if (kind !== undefined) return kind;
  if (isUserType(oid)) return USER_TYPE;
  throw new DriverAdapterError({
    kind: "UnsupportedNativeDataType",
    type: TYPE_NAMES[oid] ?? `oid ${oid}`,
  });
}

/**
 * edgepool's error as the one Prisma maps to its own codes; an error Prisma has no kind for
 * (a pool timeout, a bad argument) passes through as it is, and Prisma rethrows it.
 */
function adapterError(error: unknown): unknown {
  if (error instanceof DriverAdapterError) return error;
  if (error instanceof PostgresError) {
    return new DriverAdapterError({
      ...postgresKind(error),
      originalCode: error.code,
      originalMessage: error.message,
    });
  }
  if (error instanceof ConnectionError) {
    // A login the server refused (wrong password, no such database) carries its reason.
    if (error.cause instanceof PostgresError) return adapterError(error.cause);
    const kind = connectionKind(error);
    if (kind !== null) return new DriverAdapterError(kind);
  }
  return error;
}

// The fields of a unique or not-null violation's detail: `Key (a, b)=(1, 2) already exists.`
function keyFields(error: PostgresError): string[] | undefined {
  return /Key \(([^)]+)\)/.exec(error.detail ?? "")?.[1].split(", ");
}

function constraintOf(error: PostgresError): { fields: string[] } | { index: string } | undefined {
  if (error.column) return { fields: [error.column] };
  if (error.constraint) return { index: error.constraint };
  return undefined;
}

// The name quoted in a message such as `relation "users" does not exist`.
function quoted(message: string): string | undefined {
  return /"((?:[^"]|"")*)"/.exec(message)?.[1].replaceAll('""', '"');
}

function postgresKind(error: PostgresError): MappedError {
  switch (error.code) {
    case "22001":
      return { kind: "LengthMismatch", column: error.column };
    case "22003":
      return { kind: "ValueOutOfRange", cause: error.message };
    case "22P02":
      return { kind: "InvalidInputValue", message: error.message };
    case "23505": {
      const fields = keyFields(error);
      const constraint = error.constraint
        ? { index: error.constraint }
        : fields !== undefined
        ? { fields }
        : undefined;
      return { kind: "UniqueConstraintViolation", constraint, table: error.table };
    }
    case "23502":
      return {
        kind: "NullConstraintViolation",
        constraint: error.column ? { fields: [error.column] } : undefined,
      };
    case "23503":
      return { kind: "ForeignKeyConstraintViolation", constraint: constraintOf(error) };
    case "23001":
      return { kind: "RestrictViolation", constraint: constraintOf(error) };
    case "3D000":
      return { kind: "DatabaseDoesNotExist", db: quoted(error.message) };
    case "28000":
      return { kind: "DatabaseAccessDenied", db: quoted(error.message) };
    case "28P01":
      return { kind: "AuthenticationFailed", user: quoted(error.message) };
    case "40001":
    case "40P01":
      return { kind: "TransactionWriteConflict" };
    case "42P01":
      return { kind: "TableDoesNotExist", table: quoted(error.message) };
    case "42703":
      return { kind: "ColumnNotFound", column: quoted(error.message) };
    case "42P04":
      return { kind: "DatabaseAlreadyExists", db: quoted(error.message) };
    case "53300":
      return { kind: "TooManyConnections", cause: error.message };
    default:
      return {
        kind: "postgres",
        code: error.code,
        severity: error.severity,
        message: error.message,
        detail: error.detail,
        column: error.column,
        hint: error.hint,
      };
  }
}

function connectionKind(error: ConnectionError): MappedError | null {
  switch (error.code) {
    case "CONNECTION_LOST":
    case "CONNECTION_CLOSED":
      return { kind: "ConnectionClosed" };
    case "CONNECT_FAILED":
      return { kind: "DatabaseNotReachable" };
    case "TLS_UNAVAILABLE":
    case "TLS_FAILED":
      return { kind: "TlsConnectionError", reason: error.message };
    case "QUERY_TIMEOUT":
      return { kind: "SocketTimeout" };
    default:
      return null;
  }
}
