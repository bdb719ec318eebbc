// TLS as libpq, against the real PostgreSQL 15 of tests/_server.ts: sslmode=verify-ca, client
// certificates (paths and PEM, an encrypted key), sslrootcert=system, and the transports that
// refuse what they cannot do. Run once per TCP transport of tests/_transports.ts: deno-tcp and
// node-tcp on Deno (Deno's node:tls), node-tcp on Node.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import process from "node:process";
import { connect, type Connection, type ConnectOptions } from "../mod.ts";
import { websocketTransport } from "../transports/websocket.ts";
import { transports, WebSocketImpl } from "./_transports.ts";
import { CERT_USER, CLIENT_KEY_PASSPHRASE, getServer, type TestServer } from "./_server.ts";
import { assertConnectionError, assertPostgresError, rejection, show } from "./_helpers.ts";

const T = {
  timeout: 20_000,
  skip: process.env.TEST_DATABASE_URL ? "needs the harness's CA and client certificate" : false,
};

/** The harness URL for the cert user with `params`, at 127.0.0.1 (not in the certificate). */
function certUserUrl(server: TestServer, params: Record<string, string>): string {
  // No password: the certificate is the whole login.
  const query = new URLSearchParams(params).toString();
  return `postgres://${CERT_USER}@${server.host}:${server.port}/edgepool_test?${query}`;
}

test("test server starts", { timeout: 120_000 }, async () => {
  assert.ok((await getServer()).port > 0);
});

function viaLocalhost(url: string): string {
  return url.replace(/@127\.0\.0\.1:/, "@localhost:");
}

async function whoAndSsl(conn: Connection): Promise<{ who: string; ssl: boolean }> {
  const { rows } = await conn.query<{ who: string; ssl: boolean }>(
    "select current_user as who, ssl from pg_stat_ssl where pid = pg_backend_pid()",
  );
  return rows[0];
}

/** Asserts `error` is a TypeError whose message matches `pattern` and holds no secret. */
function assertTypeError(error: unknown, pattern: RegExp, secrets: string[] = []): void {
  assert.ok(error instanceof TypeError, `expected TypeError, got ${show(error)}`);
  assert.match(error.message, pattern);
  for (const secret of secrets) assert.ok(!error.message.includes(secret), error.message);
}

for (const transport of transports) {
  const name = (text: string) => `${text} [${transport.name}]`;
  const open = (url: string, options: ConnectOptions = {}) =>
    connect(url, { transport, connectTimeout: 10_000, ...options });

  test(
    name("connect with verify-ca and the right CA encrypts, also to 127.0.0.1 (no IP SAN)"),
    T,
    async () => {
      const server = await getServer();
      const url = server.url("scram", { sslmode: "verify-ca", sslrootcert: server.caFile! });
      await using conn = await open(url);
      assert.deepEqual(await whoAndSsl(conn), { who: "scram", ssl: true });
      // By PEM text as well; verify-full to the same address fails on the name.
      await using byPem = await open(server.url("scram", { sslmode: "verify-ca" }), {
        ca: server.caPem,
      });
      assert.equal(byPem.encrypted, true);
      const full = await rejection(
        open(server.url("scram", { sslmode: "verify-full" }), { ca: server.caPem }),
      );
      assertConnectionError(full, "TLS_FAILED");
    },
  );

  test(name("connect with verify-ca and another CA fails with TLS_FAILED"), T, async () => {
    const server = await getServer();
    const other = server.tls!.otherCaFile;
    for (const url of [server.url("scram"), viaLocalhost(server.url("scram"))]) {
      const error = await rejection(
        open(url.replace(/\?.*$/, "") + `?sslmode=verify-ca&sslrootcert=${other}`),
      );
      assertConnectionError(error, "TLS_FAILED");
    }
    // require with a CA verifies the chain too, as libpq's does.
    const required = await rejection(
      open(server.url("scram", { sslmode: "require", sslrootcert: other })),
    );
    assertConnectionError(required, "TLS_FAILED");
  });

  test(name("connect as the cert user with sslcert and sslkey paths logs in"), T, async () => {
    const server = await getServer();
    const url = certUserUrl(server, {
      sslmode: "verify-full",
      sslrootcert: server.caFile!,
      sslcert: server.tls!.certFile,
      sslkey: server.tls!.keyFile,
    });
    await using conn = await open(viaLocalhost(url));
    assert.deepEqual(await whoAndSsl(conn), { who: CERT_USER, ssl: true });
    const { rows } = await conn.query<{ dn: string }>(
      "select client_dn as dn from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert.equal(rows[0].dn, `/CN=${CERT_USER}`);
  });

  test(name("connect as the cert user with cert and key PEM options logs in"), T, async () => {
    const server = await getServer();
    const url = certUserUrl(server, { sslmode: "verify-ca" });
    await using conn = await open(url, {
      ca: server.caPem,
      cert: readFileSync(server.tls!.certFile, "utf8"),
      key: readFileSync(server.tls!.keyFile, "utf8"),
    });
    assert.deepEqual(await whoAndSsl(conn), { who: CERT_USER, ssl: true });
  });

  test(name("connect as the cert user without a certificate fails with 28000"), T, async () => {
    const server = await getServer();
    const url = certUserUrl(server, { sslmode: "require" });
    // With the CA: Deno's own TLS verifies the chain even for `require`.
    const error = await rejection(open(url, { ca: server.caPem }));
    assertPostgresError(error, "28000");
    assert.match(error.message, /certificate authentication failed|connection requires a valid/);
  });

  test(
    name("connect with an encrypted key logs in with sslpassword, and throws without it"),
    T,
    async () => {
      const server = await getServer();
      const params = {
        sslmode: "verify-ca",
        sslrootcert: server.caFile!,
        sslcert: server.tls!.certFile,
        sslkey: server.tls!.encryptedKeyFile,
      };
      const url = certUserUrl(server, { ...params, sslpassword: CLIENT_KEY_PASSPHRASE });
      await using conn = await open(url);
      assert.deepEqual(await whoAndSsl(conn), { who: CERT_USER, ssl: true });
      const pem = await open(certUserUrl(server, { sslmode: "require" }), {
        cert: readFileSync(server.tls!.certFile, "utf8"),
        key: readFileSync(server.tls!.encryptedKeyFile, "utf8"),
        sslpassword: CLIENT_KEY_PASSPHRASE,
      });
      await pem.close();

      const wrong = "wrong-" + CLIENT_KEY_PASSPHRASE;
      for (const extra of [{}, { sslpassword: wrong }] as Record<string, string>[]) {
        const error = await rejection(open(certUserUrl(server, { ...params, ...extra })));
        assertTypeError(error, /Cannot load the TLS client key \(sslkey .*client.enc.key.\)/, [
          wrong,
          CLIENT_KEY_PASSPHRASE,
          "PRIVATE KEY",
        ]);
      }
    },
  );

  test(name("connect with a missing sslkey file throws TypeError naming it"), T, async () => {
    const server = await getServer();
    const url = certUserUrl(server, {
      sslmode: "require",
      sslcert: server.tls!.certFile,
      sslkey: "/nonexistent/edgepool-client.key",
    });
    const error = await rejection(open(url));
    assertTypeError(error, /sslkey file '\/nonexistent\/edgepool-client\.key': ENOENT/);
  });

  test(
    name("connect with sslrootcert=system verifies against the runtime's roots"),
    T,
    async () => {
      // The harness CA is no system root: the chain fails, by IP and by name alike.
      const server = await getServer();
      for (const url of [server.url("scram"), viaLocalhost(server.url("scram"))]) {
        const error = await rejection(open(url + "?sslrootcert=system"));
        assertConnectionError(error, "TLS_FAILED");
      }
    },
  );
}

/** Deno.startTls can neither verify a chain against given CAs alone nor present a certificate. */
test("websocket transport refuses a client certificate with a TypeError", async () => {
  // Refused before the WebSocket opens: nothing listens on this address.
  const transport = websocketTransport({ proxy: "ws://127.0.0.1:9/v2", WebSocket: WebSocketImpl });
  const error = await rejection(
    connect("postgres://u@db/app?sslmode=require", { transport, cert: "c", key: "k" }),
  );
  assertTypeError(error, /cannot be presented .*WebSocket transport/);
});
