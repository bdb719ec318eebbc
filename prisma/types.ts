/**
 * The driver adapter interface of Prisma (the `@prisma/driver-adapter-utils` package, the same
 * in Prisma 6.16+ and 7) that `PrismaEdgepool` implements, written out here with the
 * members it uses so that edgepool's types do not depend on Prisma's package: the names are
 * Prisma's, and tests/prisma_test.ts checks that each is assignable to Prisma's own, for
 * Prisma 7 and 6.
 *
 * @module
 */

/** The type of one query argument, as Prisma's query engine describes it. */
export interface ArgType {
  /** The Prisma scalar type of the argument. */
  scalarType:
    | "string"
    | "int"
    | "bigint"
    | "float"
    | "decimal"
    | "boolean"
    | "enum"
    | "uuid"
    | "json"
    | "datetime"
    | "bytes"
    | "unknown";
  /** The database type of the column it is compared with or written to (`"TIMESTAMPTZ"`...). */
  dbType?: string;
  /** One value, or a list of them (a PostgreSQL array). */
  arity: "scalar" | "list";
}

/** A statement from Prisma's query engine: `$1`, `$2`, ... in `sql` are `args`. */
export interface SqlQuery {
  /** The SQL text. */
  sql: string;
  /** The parameters. */
  args: unknown[];
  /** The type of each parameter, in order. */
  argTypes: ArgType[];
}

/**
 * A column type, as a number of Prisma's `ColumnTypeEnum`: `0` Int32, `1` Int64, `2` Float,
 * `3` Double, `4` Numeric, `5` Boolean, `6` Character, `7` Text, `8` Date, `9` Time,
 * `10` DateTime, `11` Json, `12` Enum, `13` Bytes, `14` Set, `15` Uuid; `64` to `78` the arrays
 * of the first fifteen in that order (`64 + n`); `128` UnknownNumber.
 */
export type ColumnType =
  | 0
  | 1
  | 2
  | 3
  | 4
  | 5
  | 6
  | 7
  | 8
  | 9
  | 10
  | 11
  | 12
  | 13
  | 14
  | 15
  | 64
  | 65
  | 66
  | 67
  | 68
  | 69
  | 70
  | 71
  | 72
  | 73
  | 74
  | 75
  | 76
  | 77
  | 78
  | 128;

/** The rows of a statement, for Prisma's query engine. */
export interface SqlResultSet {
  /** The type of each column, in order. */
  columnTypes: ColumnType[];
  /** The name of each column, in order. */
  columnNames: string[];
  /** The rows, each an array of values in column order. */
  rows: unknown[][];
}

/**
 * The isolation levels Prisma asks for. PostgreSQL has no `SNAPSHOT`: asked for it, the adapter
 * rejects with Prisma's `InvalidIsolationLevel`.
 */
export type IsolationLevel =
  | "READ UNCOMMITTED"
  | "READ COMMITTED"
  | "REPEATABLE READ"
  | "SNAPSHOT"
  | "SERIALIZABLE";

/** What the adapter tells Prisma about its database. */
export interface ConnectionInfo {
  /** The schema the models live in, when not the first on the `search_path`. */
  schemaName?: string;
  /** Whether Prisma may load relations with joins (PostgreSQL: yes). */
  supportsRelationJoins: boolean;
}

/** How Prisma ends a transaction. */
export interface TransactionOptions {
  /**
   * `false`: Prisma's engine sends `COMMIT` or `ROLLBACK` through `executeRaw` itself, then
   * calls `commit()` or `rollback()`.
   */
  usePhantomQuery: boolean;
}

/** What runs Prisma's statements: the adapter, or one of its transactions. */
export interface SqlQueryable {
  /** The database family: `"postgres"`. */
  readonly provider: "postgres";
  /** The adapter's name: `"edgepool"`. */
  readonly adapterName: string;
  /** Runs a statement and returns its rows. */
  queryRaw(query: SqlQuery): Promise<SqlResultSet>;
  /** Runs a statement and returns the number of rows it affected. */
  executeRaw(query: SqlQuery): Promise<number>;
}

/** An interactive transaction: one connection, checked out until it ends. */
export interface Transaction extends SqlQueryable {
  /** See {@link TransactionOptions}. */
  readonly options: TransactionOptions;
  /** Returns the connection to the pool, once Prisma's engine has sent `COMMIT`. */
  commit(): Promise<void>;
  /** Returns the connection to the pool, once Prisma's engine has sent `ROLLBACK`. */
  rollback(): Promise<void>;
  /** `SAVEPOINT name` (Prisma 7's nested transactions). */
  createSavepoint(name: string): Promise<void>;
  /** `ROLLBACK TO SAVEPOINT name`. */
  rollbackToSavepoint(name: string): Promise<void>;
  /** `RELEASE SAVEPOINT name`. */
  releaseSavepoint(name: string): Promise<void>;
}

/** The adapter Prisma's client gets from `PrismaEdgepool`'s `connect()`. */
export interface SqlDriverAdapter extends SqlQueryable {
  /** Runs several statements separated by semicolons (Prisma's migrations). */
  executeScript(script: string): Promise<void>;
  /** Checks out a connection and begins a transaction on it. */
  startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction>;
  /** See {@link ConnectionInfo}. */
  getConnectionInfo(): ConnectionInfo;
  /** Closes the pool if the adapter made it, from a URL; leaves a given pool open. */
  dispose(): Promise<void>;
}
