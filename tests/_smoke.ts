// The smoke run of the built npm package, the same in every runtime: tests/npm_package_test.ts
// writes these two plain-ESM modules into the scratch project, as _smoke.mjs and
// _smoke_using.mjs, next to a small entry per runtime. Strings here because they import
// "edgepool", which resolves only there (deno check tests/ would try to resolve it).

/** _smoke.mjs: exports smoke({ url, ws, http, WebSocket }), which returns the results. */
export const SMOKE_SCRIPT: string =
  `// The smoke run of the built npm package, the same in every runtime (Node 20, Bun and Deno from
// the installed package, workerd from a bundle of its workerd build): a query over TCP
// (cloudflare:sockets in workerd), one over WebSocket and one over HTTP through edgepool's
// gateway, a transaction, and a checkout returned by "await using", or where the runtime cannot
// parse that (Node 20) by try/finally calling Symbol.asyncDispose itself.

import { createPool } from "edgepool";
import { httpTransport } from "edgepool/transports/http";
import { websocketTransport } from "edgepool/transports/websocket";

/** Runs the smoke checks against the server's URL and the gateway's endpoints; JSON-able. */
export async function smoke({ url, ws, http, WebSocket }) {
  const out = {};
  const pool = createPool(url, { poolSize: 2 });
  try {
    out.tcp = (await pool.query("select $1::int + 1 as n", [41])).rows[0].n;
    out.transaction = await pool.transaction(async (tx) => {
      await tx.query("create temp table smoke (n int) on commit drop");
      await tx.query("insert into smoke values ($1), ($2)", [40, 2]);
      return (await tx.query("select sum(n)::int as n from smoke")).rows[0].n;
    });
    const { checkout, syntax } = await checkoutFunction();
    out.checkoutSyntax = syntax;
    out.checkout = await checkout(pool);
  } finally {
    await pool.close();
  }

  const overWebSocket = createPool(url, {
    transport: websocketTransport({ proxy: ws, ...(WebSocket ? { WebSocket } : {}) }),
  });
  try {
    out.websocket = (await overWebSocket.query("select $1::text || '!' as s", ["ws"])).rows[0].s;
  } finally {
    await overWebSocket.close();
  }

  const overHttp = createPool(url, { transport: httpTransport({ endpoint: http }) });
  try {
    out.http = (await overHttp.query("select $1::text || '!' as s", ["http"])).rows[0].s;
  } finally {
    await overHttp.close();
  }
  return out;
}

/** The "await using" version where the runtime parses it, else the explicit one. */
async function checkoutFunction() {
  try {
    const { checkoutWithUsing } = await import("./_smoke_using.mjs");
    return { checkout: checkoutWithUsing, syntax: "await using" };
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    return { checkout: checkoutWithFinally, syntax: "try/finally" };
  }
}

/** What "await using" does, spelled out for parsers without it. */
async function checkoutWithFinally(pool) {
  const conn = await pool.connect();
  let n;
  try {
    n = (await conn.query("select $1::int * 2 as n", [21])).rows[0].n;
  } finally {
    await conn[Symbol.asyncDispose]();
  }
  return { n, released: conn.released };
}
`;

/** _smoke_using.mjs: the checkout with "await using". */
export const SMOKE_USING_SCRIPT: string =
  `// The checkout with "await using", in a module of its own so that a runtime whose parser lacks
// the syntax (Node 20) fails only this import, with a SyntaxError.

/** Checks a connection out of the pool for one query; "await using" returns it. */
export async function checkoutWithUsing(pool) {
  let handle;
  let n;
  {
    await using conn = await pool.connect();
    handle = conn;
    n = (await conn.query("select $1::int * 2 as n", [21])).rows[0].n;
  }
  return { n, released: handle.released };
}
`;
