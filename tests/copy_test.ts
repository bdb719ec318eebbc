// copyFrom and copyTo (src/copy.ts) against the real PostgreSQL 15 of tests/_server.ts: over
// each TCP transport, over WebSocket through edgepool's gateway, and behind PgBouncer in
// transaction mode; then the pools' COPY (the connection returned on every path), the bounds
// that backpressure keeps (counted through a transport that holds or counts what passes, never
// timed), and where COPY is not available (HTTP, bad arguments, statements that are no COPY).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  type ByteStream,
  connect,
  type Connection,
  ConnectionError,
  createPool,
  HttpPool,
  type Pool,
  type PooledConnection,
  PostgresError,
  type StreamHandlers,
  type Transport,
} from "../mod.ts";
import { gatewayWebSocket, transports } from "./_transports.ts";
import { getServer, type TestServer } from "./_server.ts";
import { type PgBouncer, startPgBouncer } from "./_pgbouncer.ts";
import { runReadmeSnippet } from "./_readme.ts";
import {
  assertConnectionError,
  assertPostgresError,
  delay,
  eventually,
  rejection,
  uniqueName,
  within,
} from "./_helpers.ts";

const T = { timeout: 60_000 };
const PLAIN = { sslmode: "disable" };

let server: TestServer;
let bouncer: PgBouncer | undefined;

before(async () => {
  server = await getServer();
});

after(async () => {
  await bouncer?.stop();
});

/** A way to reach the server: a transport, directly or through PgBouncer. */
interface Target {
  name: string;
  open(): Promise<Connection>;
}

const targets: Target[] = [
  ...transports.map((transport) => ({
    name: transport.name,
    open: () => connect(server.url("scram", PLAIN), { transport }),
  })),
  {
    name: "websocket via the gateway",
    open: () => connect(server.url("scram", PLAIN), { transport: gatewayWebSocket }),
  },
  {
    name: "pgbouncer (transaction mode)",
    open: async () => {
      bouncer ??= await startPgBouncer({ poolMode: "transaction", poolSize: 2 });
      return await connect(bouncer.url("scram", PLAIN), { transport: transports[0] });
    },
  },
];

/** A new table `(id int primary key, name text)`, dropped at the end of the process. */
async function newTable(conn: Connection): Promise<string> {
  const table = uniqueName("copy_t");
  await conn.query(`create table ${table} (id int primary key, name text)`);
  tables.push(table);
  return table;
}
const tables: string[] = [];
after(async () => {
  if (tables.length === 0) return;
  await using conn = await connect(server.url("scram", PLAIN));
  await conn.query(`drop table if exists ${tables.join(", ")}`);
});

/** The text-format line of row `i`. */
const line = (i: number) => `${i}\tname ${i} é\n`;

async function* lines(count: number): AsyncGenerator<string> {
  for (let i = 1; i <= count; i++) yield line(i);
}

async function count(conn: Connection, table: string): Promise<number> {
  const { rows } = await conn.query<{ n: number }>(`select count(*)::int as n from ${table}`);
  return rows[0].n;
}

const decoder = new TextDecoder();

/** Everything `chunks` yields, decoded, and how many chunks there were. */
async function readAll(chunks: AsyncIterable<Uint8Array>): Promise<[string, number]> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  let size = 0;
  for (const part of parts) size += part.length;
  const all = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return [decoder.decode(all), parts.length];
}

/** A query after a COPY runs and answers right (the connection is usable, its answers in order). */
async function assertUsable(conn: Connection): Promise<void> {
  const { rows } = await within(conn.query("select $1::int + 1 as n", [41]), 20_000, "next query");
  assert.deepEqual(rows, [{ n: 42 }]);
  assert.equal(conn.transactionStatus, "idle");
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

// ---------------------------------------------------------------------------------------------
// The suite, once per way to the server

for (const target of targets) {
  const name = (text: string) => `${text} [${target.name}]`;

  test(
    name("copyFrom copies every row and resolves to the count, when the source yields strings"),
    T,
    async () => {
      await using conn = await target.open();
      const table = await newTable(conn);
      const copied = await conn.copyFrom(`copy ${table} from stdin`, lines(5000));
      assert.equal(copied, 5000);
      assert.equal(await count(conn, table), 5000);
      const { rows } = await conn.query(`select name from ${table} where id = 4321`);
      assert.deepEqual(rows, [{ name: "name 4321 é" }]);
    },
  );

  test(
    name("copyFrom takes Uint8Array chunks cut anywhere, when the source is a ReadableStream"),
    T,
    async () => {
      await using conn = await target.open();
      const table = await newTable(conn);
      const bytes = new TextEncoder().encode(
        Array.from({ length: 300 }, (_, i) => line(i + 1)).join(""),
      );
      let cancelled = false;
      const source = new ReadableStream<Uint8Array>({
        start(controller) {
          // Cut through rows and through the two bytes of é.
          for (let at = 0; at < bytes.length; at += 7) controller.enqueue(bytes.slice(at, at + 7));
          controller.close();
        },
        cancel() {
          cancelled = true;
        },
      });
      assert.equal(await conn.copyFrom(`copy ${table} from stdin`, source), 300);
      assert.equal(cancelled, false);
      const { rows } = await conn.query(`select name from ${table} where id = 299`);
      assert.deepEqual(rows, [{ name: "name 299 é" }]);
    },
  );

  test(name("copyFrom takes a sync iterable, and an empty one copies nothing"), T, async () => {
    await using conn = await target.open();
    const table = await newTable(conn);
    assert.equal(
      await conn.copyFrom(`copy ${table} from stdin (format csv)`, ["1,a\n2,b\n", "3,c\n"]),
      3,
    );
    assert.equal(await conn.copyFrom(`copy ${table} from stdin`, []), 0);
    assert.equal(await count(conn, table), 3);
  });

  test(
    name("copyFrom sends CopyFail and rejects with the source's error, when the source throws"),
    T,
    async () => {
      await using conn = await target.open();
      const table = await newTable(conn);
      const boom = new Error("the source broke");
      async function* failing() {
        yield* lines(1000);
        throw boom;
      }
      const error = await rejection(conn.copyFrom(`copy ${table} from stdin`, failing()));
      assert.equal(error, boom);
      await assertUsable(conn);
      assert.equal(await count(conn, table), 0);
    },
  );

  test(
    name("copyFrom rejects with the PostgresError and closes the source, when a row is bad"),
    T,
    async () => {
      await using conn = await target.open();
      const table = await newTable(conn);
      let pulled = 0;
      let closed = false;
      async function* source() {
        try {
          yield "1\tone\n";
          yield "not a number\ttwo\n";
          // Many more: the server's error stops the pulling long before their end.
          for (let i = 3; i < 10_000_000; i++) {
            pulled++;
            yield line(i);
          }
        } finally {
          closed = true;
        }
      }
      const error = await rejection(conn.copyFrom(`copy ${table} from stdin`, source()));
      assertPostgresError(error, "22P02");
      assert.equal(closed, true);
      assert.ok(pulled < 10_000_000 - 3, `pulled ${pulled}`);
      await assertUsable(conn);
      assert.equal(await count(conn, table), 0);
    },
  );

  test(
    name("copyFrom ends the COPY and rejects with the reason, when the signal aborts"),
    T,
    async () => {
      await using conn = await target.open();
      const table = await newTable(conn);
      const controller = new AbortController();
      const reason = new Error("stop copying");
      let closed = false;
      async function* source() {
        try {
          for (let i = 1;; i++) {
            if (i === 500) controller.abort(reason);
            yield line(i);
          }
        } finally {
          closed = true;
        }
      }
      const error = await rejection(
        conn.copyFrom(`copy ${table} from stdin`, source(), { signal: controller.signal }),
      );
      assert.equal(error, reason);
      assert.equal(closed, true);
      await assertUsable(conn);
      assert.equal(await count(conn, table), 0);
    },
  );

  test(
    name("copyFrom resolves with the rows copied, when the signal aborts after all was sent"),
    T,
    async () => {
      await using conn = await target.open();
      const table = await newTable(conn);
      const controller = new AbortController();
      async function* source() {
        for (let i = 1; i <= 100; i++) yield line(i);
        // Once the pump has sent the last chunk and CopyDone: too late to call the COPY off.
        setTimeout(() => controller.abort(new Error("too late")), 0);
      }
      const copied = await conn.copyFrom(`copy ${table} from stdin`, source(), {
        signal: controller.signal,
      });
      assert.equal(copied, 100);
      assert.equal(await count(conn, table), 100, "what was reported copied was committed");
      await assertUsable(conn);
    },
  );

  test(
    name(
      "copyFrom holds the queries issued meanwhile until it ends, when they are issued together",
    ),
    T,
    async () => {
      await using conn = await target.open();
      const table = await newTable(conn);
      const copy = conn.copyFrom(`copy ${table} from stdin`, lines(2000));
      const after = conn.query(`select count(*)::int as n from ${table}`);
      assert.equal(await copy, 2000);
      assert.deepEqual((await after).rows, [{ n: 2000 }]);
    },
  );

  test(name("copyTo yields the table's data, when consumed to the end"), T, async () => {
    await using conn = await target.open();
    const table = await newTable(conn);
    await conn.copyFrom(`copy ${table} from stdin`, lines(20_000));
    const [data, chunks] = await readAll(conn.copyTo(`copy ${table} to stdout`));
    assert.equal(data, Array.from({ length: 20_000 }, (_, i) => line(i + 1)).join(""));
    // Coalesced: far fewer chunks than rows.
    assert.ok(chunks < 20_000 / 10, `${chunks} chunks`);
    await assertUsable(conn);
  });

  test(name("copyTo's readable streams the same data, when piped"), T, async () => {
    await using conn = await target.open();
    const table = await newTable(conn);
    await conn.copyFrom(`copy ${table} from stdin`, lines(100));
    const parts: string[] = [];
    await conn.copyTo(`copy ${table} to stdout (format csv)`).readable.pipeThrough(
      new TextDecoderStream(),
    ).pipeTo(new WritableStream({ write: (text) => void parts.push(text) }));
    assert.equal(
      parts.join(""),
      Array.from({ length: 100 }, (_, i) => `${i + 1},name ${i + 1} é\n`).join(""),
    );
    await assertUsable(conn);
  });

  test(
    name(
      "copyTo cancels the COPY and leaves the connection usable, when the consumer breaks early",
    ),
    T,
    async () => {
      await using conn = await target.open();
      let seen = 0;
      for await (const chunk of conn.copyTo(BIG)) {
        seen += chunk.length;
        if (seen > 100_000) break;
      }
      await assertUsable(conn);
      // And again, a COPY after a cancelled one is whole.
      const [data] = await readAll(
        conn.copyTo("copy (select g from generate_series(1, 1000) g) to stdout"),
      );
      assert.equal(data.split("\n").length, 1001);
    },
  );

  test(name("copyTo cancels and rethrows, when the consumer throws"), T, async () => {
    await using conn = await target.open();
    const oops = new Error("consumer failed");
    const error = await rejection((async () => {
      for await (const _ of conn.copyTo(BIG)) throw oops;
    })());
    assert.equal(error, oops);
    await assertUsable(conn);
  });

  test(name("copyTo rejects with the reason, when the signal aborts"), T, async () => {
    await using conn = await target.open();
    const controller = new AbortController();
    const reason = new Error("enough");
    const error = await rejection((async () => {
      for await (const _ of conn.copyTo(BIG, { signal: controller.signal })) {
        controller.abort(reason);
      }
    })());
    assert.equal(error, reason);
    await assertUsable(conn);
  });
}

/** A COPY TO of about 110 MB: more than any test reads, so only a cancel ends it early. */
const BIG = "copy (select g, repeat('x', 100) from generate_series(1, 1000000) g) to stdout";

// ---------------------------------------------------------------------------------------------
// Errors that need no particular transport

test(
  "copyFrom and copyTo throw TypeError before sending anything, when the arguments are wrong",
  T,
  async () => {
    await using conn = await connect(server.url("scram", PLAIN));
    const bad: unknown[] = [undefined, null, 42, "1\tone\n", new Uint8Array(3), {}];
    for (const source of bad) {
      const error = await rejection(conn.copyFrom("copy t from stdin", source as never));
      assert.ok(error instanceof TypeError, String(error));
    }
    assert.ok(await rejection(conn.copyFrom(42 as never, [])) instanceof TypeError);
    assert.throws(() => conn.copyTo(undefined as never), TypeError);
    assert.throws(() => conn.copyTo("copy t to stdout", { highWaterMark: 0 }), RangeError);
    assert.equal(conn.pending, 0);
    await assertUsable(conn);
  },
);

test(
  "copyFrom rejects with UNSUPPORTED, when the statement is not COPY FROM STDIN",
  T,
  async () => {
    await using conn = await connect(server.url("scram", PLAIN));
    const pulled: string[] = [];
    const source = {
      *[Symbol.iterator]() {
        pulled.push("x");
        yield "1\n";
      },
    };
    for (const sql of ["select 1", "copy (select 1) to stdout"]) {
      const error = await rejection(conn.copyFrom(sql, source));
      assertConnectionError(error, "UNSUPPORTED");
      assert.match(error.message, /copyFrom\(\) runs COPY \.\.\. FROM STDIN only/);
    }
    assert.deepEqual(pulled, []);
    assertPostgresError(
      await rejection(conn.copyFrom("copy no_such_table from stdin", [])),
      "42P01",
    );
    await assertUsable(conn);
  },
);

test("copyTo rejects with UNSUPPORTED, when the statement is not COPY TO STDOUT", T, async () => {
  await using conn = await connect(server.url("scram", PLAIN));
  const table = await newTable(conn);
  for (const sql of ["select 1", `copy ${table} from stdin`]) {
    const error = await rejection(readAll(conn.copyTo(sql)));
    assertConnectionError(error, "UNSUPPORTED");
    assert.match(error.message, /copyTo\(\) runs COPY \.\.\. TO STDOUT only/);
  }
  await assertUsable(conn);
});

test(
  "copyTo starts nothing until consumed, and a second consumer gets a TypeError",
  T,
  async () => {
    await using conn = await connect(server.url("scram", PLAIN));
    const out = conn.copyTo("copy (select 1) to stdout");
    assert.equal(conn.pending, 0);
    const iterator = out[Symbol.asyncIterator]();
    assert.equal(conn.pending, 0);
    assert.throws(() => out.readable, TypeError);
    assert.throws(() => out[Symbol.asyncIterator](), TypeError);
    assert.equal(decoder.decode((await iterator.next()).value), "1\n");
    assert.equal((await iterator.next()).done, true);
    await assertUsable(conn);
  },
);

test("query rejects COPY with UNSUPPORTED pointing at copyFrom and copyTo", T, async () => {
  await using conn = await connect(server.url("scram", PLAIN));
  const into = await rejection(conn.query("copy (select 1) to stdout"));
  assertConnectionError(into, "UNSUPPORTED");
  assert.match(into.message, /copyTo\(sql\)/);
  const table = await newTable(conn);
  const from = await rejection(conn.query(`copy ${table} from stdin`));
  assertConnectionError(from, "UNSUPPORTED");
  assert.match(from.message, /copyFrom\(sql, source\)/);
  await assertUsable(conn);
});

test("HttpPool and its checkouts reject COPY with UNSUPPORTED, when called", T, async () => {
  await using pool = new HttpPool("postgres://app:secret@127.0.0.1:9/app", {
    endpoint: "http://127.0.0.1:9/sql",
  });
  assertConnectionError(await rejection(pool.copyFrom("copy t from stdin", [])), "UNSUPPORTED");
  assert.throws(
    () => pool.copyTo("copy t to stdout"),
    (e) => e instanceof ConnectionError && e.code === "UNSUPPORTED",
  );
  await using checkout = await pool.connect();
  assertConnectionError(await rejection(checkout.copyFrom("copy t from stdin", [])), "UNSUPPORTED");
  assert.throws(() => checkout.copyTo("copy t to stdout"), ConnectionError);
});

// ---------------------------------------------------------------------------------------------
// Pools: the connection goes back on every path

/** Asserts `pool` holds one connection, idle. */
function assertIdle(pool: Pool<unknown>): void {
  const stats = pool.stats();
  assert.equal(stats.checkedOut, 0, pool.status());
  assert.equal(stats.checkedIn, stats.poolSize, pool.status());
}

test(
  "pool.copyFrom returns the connection, when the copy succeeds, the source throws or a row is bad",
  T,
  async () => {
    await using pool = createPool(server.url("scram", PLAIN), {
      poolClass: "QueuePool",
      poolSize: 1,
      maxOverflow: 0,
    });
    await using setup = await connect(server.url("scram", PLAIN));
    const table = await newTable(setup);
    assert.equal(await pool.copyFrom(`copy ${table} from stdin`, lines(100)), 100);
    assertIdle(pool as Pool<unknown>);
    async function* failing() {
      yield "1\tone\n";
      throw new Error("nope");
    }
    assert.match(
      String(await rejection(pool.copyFrom(`copy ${table} from stdin`, failing()))),
      /nope/,
    );
    assertIdle(pool as Pool<unknown>);
    assert.ok(
      await rejection(pool.copyFrom(`copy ${table} from stdin`, ["x\n"])) instanceof PostgresError,
    );
    assertIdle(pool as Pool<unknown>);
    assert.deepEqual((await pool.query(`select count(*)::int as n from ${table}`)).rows, [{
      n: 100,
    }]);
    assert.equal(pool.stats().connectionsNum, 1);
  },
);

test(
  "pool.copyTo checks out when consumed and returns the connection, when it ends, breaks, throws or aborts",
  T,
  async () => {
    await using pool = createPool(server.url("scram", PLAIN), {
      poolClass: "QueuePool",
      poolSize: 1,
      maxOverflow: 0,
    });
    await pool.query("select 1");
    const out = pool.copyTo("copy (select g from generate_series(1, 10) g) to stdout");
    assert.equal(pool.stats().checkedOut, 0);
    const [data] = await readAll(out);
    assert.equal(data, Array.from({ length: 10 }, (_, i) => `${i + 1}\n`).join(""));
    assertIdle(pool as Pool<unknown>);

    for await (const _ of pool.copyTo(BIG)) {
      assert.equal(pool.stats().checkedOut, 1);
      break;
    }
    assertIdle(pool as Pool<unknown>);

    const oops = new Error("oops");
    assert.equal(
      await rejection((async () => {
        for await (const _ of pool.copyTo(BIG)) throw oops;
      })()),
      oops,
    );
    assertIdle(pool as Pool<unknown>);

    const controller = new AbortController();
    const reason = new Error("abort");
    assert.equal(
      await rejection((async () => {
        for await (const _ of pool.copyTo(BIG, { signal: controller.signal })) {
          controller.abort(reason);
        }
      })()),
      reason,
    );
    assertIdle(pool as Pool<unknown>);

    await pool.copyTo(BIG).readable.cancel();
    const reader = pool.copyTo(BIG).readable.getReader();
    await reader.read();
    await reader.cancel();
    assertIdle(pool as Pool<unknown>);

    assert.deepEqual((await pool.query("select 1 as x")).rows, [{ x: 1 }]);
    assert.equal(pool.stats().connectionsNum, 1);
  },
);

test("PooledConnection.copyFrom and copyTo run on the checked-out connection", T, async () => {
  await using pool = createPool(server.url("scram", PLAIN), {
    poolClass: "QueuePool",
    poolSize: 1,
    maxOverflow: 0,
  });
  await using conn: PooledConnection<Connection> = await pool.connect() as PooledConnection<
    Connection
  >;
  const table = uniqueName("copy_t");
  tables.push(table);
  await conn.query(`create temp table ${table} (id int, name text)`);
  assert.equal(await conn.copyFrom(`copy ${table} from stdin`, lines(10)), 10);
  const [data] = await readAll(conn.copyTo(`copy ${table} to stdout`));
  assert.equal(data, Array.from({ length: 10 }, (_, i) => line(i + 1)).join(""));
});

// ---------------------------------------------------------------------------------------------
// Backpressure, counted

/** The default TCP transport with its streams wrapped by `wrap`. */
function wrapped(wrap: (stream: ByteStream) => ByteStream): Transport {
  const inner = transports[0];
  return { name: `${inner.name} (wrapped)`, connect: async (o) => wrap(await inner.connect(o)) };
}

test(
  "copyFrom pulls the source only as the transport drains, when the transport holds writes",
  T,
  async () => {
    const HIGH_WATER = 65536;
    const ROW = 1000;
    /** Writes of CopyData held back while `holding`. */
    let holding = false;
    const held: Uint8Array[] = [];
    let heldBytes = 0;
    const drains: (() => void)[] = [];
    let drainCalls = 0;
    let inner!: ByteStream;
    const release = () => {
      holding = false;
      for (const bytes of held.splice(0)) inner.write(bytes);
      heldBytes = 0;
      for (const resolve of drains.splice(0)) resolve();
    };
    const transport = wrapped((stream) => {
      inner = stream;
      return {
        encrypted: stream.encrypted,
        start: (handlers: StreamHandlers) => stream.start(handlers),
        close: () => stream.close(),
        write(data: Uint8Array) {
          if (holding && data[0] === 0x64) {
            held.push(data);
            heldBytes += data.length;
          } else stream.write(data);
        },
        get bufferedAmount() {
          return heldBytes + (stream.bufferedAmount ?? 0);
        },
        drained() {
          drainCalls++;
          if (heldBytes === 0) return stream.drained?.() ?? Promise.resolve();
          return new Promise<void>((resolve) => drains.push(resolve));
        },
      };
    });
    await using conn = await connect(server.url("scram", PLAIN), { transport });
    const table = await newTable(conn);
    const rows = 4000;
    let pulled = 0;
    const source = (async function* () {
      for (let i = 1; i <= rows; i++) {
        const text = `${i}\t${"y".repeat(ROW - String(i).length - 2)}\n`;
        pulled += text.length;
        yield text;
      }
    })();
    holding = true;
    const copy = conn.copyFrom(`copy ${table} from stdin`, source, { highWaterMark: HIGH_WATER });
    await eventually("copyFrom waits for the transport", () => drainCalls > 0);
    const atWait = pulled;
    // Given every chance to pull on, it does not.
    for (let i = 0; i < 20; i++) await delay(5);
    assert.equal(pulled, atWait);
    assert.ok(heldBytes > HIGH_WATER, `${heldBytes} held`);
    // Pulled beyond what the transport holds: one CopyData being filled (64 KiB and a row).
    assert.ok(pulled - heldBytes <= 65536 + ROW, `${pulled} pulled, ${heldBytes} held`);
    assert.ok(heldBytes <= HIGH_WATER + 65536 + ROW + 5, `${heldBytes} held`);
    release();
    assert.equal(await copy, rows);
    assert.equal(await count(conn, table), rows);
    assert.equal(pulled, rows * ROW);
  },
);

test(
  "copyTo pauses the transport past the high-water mark and resumes it, when the consumer is slow",
  T,
  async () => {
    const HIGH_WATER = 256 * 1024;
    let pauses = 0;
    let resumes = 0;
    let received = 0;
    let largestRead = 0;
    const transport = wrapped((stream) => ({
      encrypted: stream.encrypted,
      start: (handlers: StreamHandlers) =>
        stream.start({
          data(chunk) {
            received += chunk.length;
            largestRead = Math.max(largestRead, chunk.length);
            handlers.data(chunk);
          },
          close: (error) => handlers.close(error),
        }),
      write: (data: Uint8Array) => stream.write(data),
      close: () => stream.close(),
      pause() {
        pauses++;
        stream.pause!();
      },
      resume() {
        resumes++;
        stream.resume!();
      },
    }));
    await using conn = await connect(server.url("scram", PLAIN), { transport });
    const rows = 40_000; // about 4.4 MB
    const sql = `copy (select g, repeat('z', 100) from generate_series(1, ${rows}) g) to stdout`;
    const out = conn.copyTo(sql, { highWaterMark: HIGH_WATER });
    const iterator = out[Symbol.asyncIterator]();
    const first = (await iterator.next()).value!;
    let bytes = first.length;
    let lines = first.filter((byte: number) => byte === 10).length;
    await eventually("copyTo pauses the transport", () => pauses > 0);
    const atPause = received;
    const buffered = out.bufferedAmount;
    for (let i = 0; i < 20; i++) await delay(5);
    // Paused: nothing more was read, and what waits is the mark and one read at most.
    assert.equal(received, atPause);
    assert.ok(buffered > HIGH_WATER, `${buffered} buffered`);
    assert.ok(
      buffered <= HIGH_WATER + largestRead + 200,
      `${buffered} buffered, read ${largestRead}`,
    );
    for (let step = await iterator.next(); !step.done; step = await iterator.next()) {
      bytes += step.value.length;
      for (const byte of step.value) if (byte === 10) lines++;
    }
    assert.ok(resumes > 0);
    assert.equal(pauses, resumes);
    assert.equal(lines, rows);
    const { rows: [{ n }] } = await conn.query<{ n: number }>(
      `select sum(octet_length(g::text) + 102)::int as n from generate_series(1, ${rows}) g`,
    );
    assert.equal(bytes, n);
    await assertUsable(conn);
  },
);

// README's "COPY" snippet, as written, on a connection to the test server: plain JavaScript but
// for its import, whose names are handed to it here.
test("README's COPY snippet runs as written", T, async () => {
  const printed = await runReadmeSnippet("COPY", { connect }, {
    DATABASE_URL: server.url("scram", PLAIN),
  });
  assert.deepEqual(printed, [[1000], ["1,item 1\n2,item 2\n"]]);
});
