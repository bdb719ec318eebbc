// The gateway's HTTP face keeps a pool per connection string, and no more than `maxPools`:
// the least recently used idle pool is closed to make room, and when every pool is busy the
// request is refused with 503 instead of opening yet more server connections.

import assert from "node:assert/strict";
import { test } from "node:test";
import { startGateway } from "../gateway/mod.ts";
import { HttpPool } from "../src/pool/http_pool.ts";
import { getServer, type TestServer } from "./_server.ts";
import { backends, eventually } from "./_helpers.ts";

const T = { timeout: 60_000 };

const url = (server: TestServer, app: string) => server.url("scram", { application_name: app });

test("the gateway closes the least recently used idle pool beyond maxPools", T, async () => {
  const server = await getServer();
  const gateway = await startGateway({
    listen: "127.0.0.1:0",
    upstream: `${server.host}:${server.port}`,
    maxPools: 2,
  });
  const endpoint = `${gateway.url}/sql`;
  const apps = ["gwp_a", "gwp_b", "gwp_c"].map((a) => `${a}_${Date.now() % 100000}`);
  try {
    for (const app of apps.slice(0, 2)) {
      await using pool = new HttpPool(url(server, app), { endpoint });
      assert.equal((await pool.query<{ one: number }>("select 1 as one")).rows[0].one, 1);
    }
    assert.equal((await backends(server, apps[0])).length, 1);
    // A third connection string: the first (least recently used, idle) pool makes room.
    await using third = new HttpPool(url(server, apps[2]), { endpoint });
    assert.equal((await third.query<{ one: number }>("select 1 as one")).rows[0].one, 1);
    await eventually(
      "the least recently used pool's backend gone",
      async () => (await backends(server, apps[0])).length === 0,
    );
    assert.equal((await backends(server, apps[1])).length, 1);
  } finally {
    await gateway.close();
  }
});

test(
  "the gateway refuses a new connection string with 503 when every pool is busy",
  T,
  async () => {
    const server = await getServer();
    const gateway = await startGateway({
      listen: "127.0.0.1:0",
      upstream: `${server.host}:${server.port}`,
      maxPools: 1,
    });
    const endpoint = `${gateway.url}/sql`;
    try {
      await using busy = new HttpPool(url(server, "gwp_busy"), { endpoint });
      await using other = new HttpPool(url(server, "gwp_other"), { endpoint });
      const sleeping = busy.query("select pg_sleep(1)");
      await eventually(
        "the busy pool's statement has its backend",
        async () => (await backends(server, "gwp_busy")).length === 1,
      );
      const error = await other.query("select 1").then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof Error, String(error));
      assert.match(error.message, /503/);
      assert.match(error.message, /maxPools/);
      await sleeping;
      // Once idle, the busy pool can make room.
      assert.equal((await other.query<{ one: number }>("select 1 as one")).rows[0].one, 1);
    } finally {
      await gateway.close();
    }
  },
);
