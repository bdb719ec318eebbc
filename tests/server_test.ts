// The test harness itself: the server runs, speaks TLS, and pg_hba.conf says what _server.ts
// promises.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import process from "node:process";
import { getServer, passwordOf } from "./_server.ts";

// Another server's roles, pg_hba.conf and certificate are not the harness's to check.
const skip = process.env.TEST_DATABASE_URL ? "TEST_DATABASE_URL is set" : false;

// Exit status and stderr of one `psql -c "select current_user"`, run with the given URL.
function psqlAt(url: string): Promise<{ ok: boolean; out: string }> {
  // Only what the URL says: libpq would also read PG* variables.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")));
  return new Promise((resolve) => {
    execFile(
      "psql",
      ["-X", "-A", "-t", "-d", url, "-c", "select current_user"],
      { env },
      (e, o, r) => {
        resolve({ ok: !e, out: `${o}${r}`.trim() });
      },
    );
  });
}

test("harness server is PostgreSQL 15 with ssl on", async () => {
  const server = await getServer();
  assert.match(await server.psql("select version()"), /^PostgreSQL 15\./);
  assert.equal(await server.psql("show ssl"), "on");
  assert.equal(await server.psql("select current_database()"), "edgepool_test");
});

test("harness md5 user has an md5-stored password", { skip }, async () => {
  const server = await getServer();
  const stored = await server.psql("select rolpassword from pg_authid where rolname = 'md5'");
  assert.match(stored, /^md5[0-9a-f]{32}$/);
  assert.equal(passwordOf("md5"), "md5_pw");
});

test("harness pg_hba rejects ssl_only without TLS and accepts it with TLS", { skip }, async () => {
  const server = await getServer();
  const plain = await psqlAt(server.url("ssl_only", { sslmode: "disable" }));
  assert.equal(plain.ok, false, plain.out);
  assert.match(plain.out, /no pg_hba\.conf entry|rejects connection/);
  const tls = await psqlAt(server.url("ssl_only", { sslmode: "require" }));
  assert.deepEqual(tls, { ok: true, out: "ssl_only" });
});

test("harness certificate verifies for localhost but not for 127.0.0.1", { skip }, async () => {
  const server = await getServer();
  const verify = { sslmode: "verify-full", sslrootcert: server.caFile! };
  const byIp = await psqlAt(server.url("scram", verify));
  assert.equal(byIp.ok, false, byIp.out);
  assert.match(byIp.out, /does not match host name/);
  const byName = server.url("scram", verify).replace("@127.0.0.1:", "@localhost:");
  assert.deepEqual(await psqlAt(byName), { ok: true, out: "scram" });
});

test("harness users log in with their own auth method", { skip }, async () => {
  const server = await getServer();
  for (const user of ["trust", "password", "md5", "scram"] as const) {
    const result = await psqlAt(server.url(user, { sslmode: "disable" }));
    assert.deepEqual(result, { ok: true, out: user });
  }
  const wrong = server.url("scram").replace(":scram_pw@", ":wrong@");
  const bad = await psqlAt(wrong);
  assert.equal(bad.ok, false);
  assert.match(bad.out, /password authentication failed/);
});
