import { test } from "node:test";
import assert from "node:assert/strict";
import { type ConnectOptions, parseConfig } from "../src/config.ts";
import { serverAddress, unixSocketPath } from "../src/transport.ts";
import { redactUrl } from "../src/url.ts";

const PW = "Sup3rS3cretPW";

function throwsType(url: string | undefined, pattern: RegExp, options?: ConnectOptions): void {
  assert.throws(() => parseConfig(url, options), (error: unknown) => {
    assert.ok(error instanceof TypeError, `expected TypeError, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  });
}

test("parseConfig applies every default, when the URL has only a user and host", () => {
  assert.deepEqual(parseConfig("postgres://alice@db.example.com"), {
    host: "db.example.com",
    port: 5432,
    hosts: [{ host: "db.example.com", port: 5432 }],
    targetSessionAttrs: "any",
    loadBalanceHosts: false,
    user: "alice",
    password: undefined,
    database: "alice",
    sslmode: "prefer",
    ca: undefined,
    sslrootcert: undefined,
    cert: undefined,
    key: undefined,
    sslcert: undefined,
    sslkey: undefined,
    sslpassword: undefined,
    applicationName: "edgepool",
    connectTimeout: 30_000,
    options: undefined,
    bigint: false,
    types: undefined,
    serializers: undefined,
    keepAlive: true,
    keepAliveInitialDelay: 60_000,
    queryTimeout: 0,
    maxMessageSize: 256 * 1024 * 1024,
    pgbouncer: false,
    pipelineConnect: undefined,
    pooler: "none",
    poolerSign: "no sign of a pooler in the URL",
    statementCache: 100,
    statementCacheCautious: true,
  });
});

test("parseConfig reads keepalives_idle in seconds, and queryTimeout and keepAliveInitialDelay in ms", () => {
  assert.equal(parseConfig("postgres://u@h/db?keepalives_idle=15").keepAliveInitialDelay, 15_000);
  const given = parseConfig("postgres://u@h/db", {
    queryTimeout: 2500,
    keepAliveInitialDelay: 1000,
  });
  assert.equal(given.queryTimeout, 2500);
  assert.equal(given.keepAliveInitialDelay, 1000);
  assert.throws(() => parseConfig("postgres://u@h/db?keepalives_idle=x"), TypeError);
  assert.throws(() => parseConfig("postgres://u@h/db", { queryTimeout: -1 }), RangeError);
  assert.throws(() => parseConfig("postgres://u@h/db", { queryTimeout: "5" as never }), TypeError);
});

test("parseConfig reads and percent-decodes user, password, host, port and database, when present", () => {
  const config = parseConfig("postgresql://al%40ice:p%40ss%2Fw%3Ard%25@db.local:6543/my%20db");
  assert.equal(config.user, "al@ice");
  assert.equal(config.password, "p@ss/w:rd%");
  assert.equal(config.host, "db.local");
  assert.equal(config.port, 6543);
  assert.equal(config.database, "my db");
});

test("parseConfig takes the last '@' as the end of the user info, when the password has a raw '@'", () => {
  const config = parseConfig("postgres://u:p@ss@host/db");
  assert.equal(config.password, "p@ss");
  assert.equal(config.host, "host");
});

test("parseConfig strips the brackets of an IPv6 host, when the URL has one", () => {
  const config = parseConfig("postgres://u@[::1]:5433/db");
  assert.equal(config.host, "::1");
  assert.equal(config.port, 5433);
  assert.equal(parseConfig("postgres://u@[fe80::1%25eth0]/db").host, "fe80::1%eth0");
  assert.equal(parseConfig(undefined, { user: "u", host: "[::1]" }).host, "::1");
});

test("parseConfig uses localhost and the user as database, when host and path are empty", () => {
  const config = parseConfig("postgres://bob:pw@/");
  assert.equal(config.host, "localhost");
  assert.equal(config.database, "bob");
  assert.equal(parseConfig("postgres://bob@:5499").port, 5499);
});

test("parseConfig lets options override the URL, when both give a setting", () => {
  const getPassword = () => Promise.resolve("token");
  const config = parseConfig("postgres://u:urlpw@h:1111/urldb?sslmode=require&application_name=a", {
    host: "other",
    port: 2222,
    user: "v",
    password: getPassword,
    database: "optdb",
    sslmode: "disable",
    applicationName: "b",
    connectTimeout: 1500,
    options: "-c x=1",
    bigint: true,
    keepAlive: false,
    maxMessageSize: 4096,
    ca: "PEM",
    sslrootcert: "/etc/ca.pem",
  });
  assert.equal(config.host, "other");
  assert.equal(config.port, 2222);
  assert.equal(config.user, "v");
  assert.equal(config.password, getPassword);
  assert.equal(config.database, "optdb");
  assert.equal(config.sslmode, "disable");
  assert.equal(config.applicationName, "b");
  assert.equal(config.connectTimeout, 1500);
  assert.equal(config.options, "-c x=1");
  assert.equal(config.bigint, true);
  assert.equal(config.keepAlive, false);
  assert.equal(config.maxMessageSize, 4096);
  assert.deepEqual(config.ca, ["PEM"]);
  assert.equal(config.sslrootcert, "/etc/ca.pem");
});

test("parseConfig takes everything from options, when the URL is undefined", () => {
  const config = parseConfig(undefined, { user: "u", password: "p", ca: ["A", "B"] });
  assert.equal(config.host, "localhost");
  assert.equal(config.port, 5432);
  assert.equal(config.database, "u");
  assert.equal(config.password, "p");
  assert.deepEqual(config.ca, ["A", "B"]);
});

test("parseConfig accepts a URL object, when given one", () => {
  const config = parseConfig(new URL("postgres://u:p@h:7000/d?sslmode=verify-full"));
  assert.deepEqual([config.host, config.port, config.database, config.sslmode], [
    "h",
    7000,
    "d",
    "verify-full",
  ]);
});

test("parseConfig reads the query parameters, when they are supported", () => {
  const config = parseConfig(
    "postgres://u@h/d?sslmode=require&sslrootcert=%2Fca.pem&application_name=my+app" +
      "&connect_timeout=10&options=-c%20search_path%3Dapp&client_encoding=UTF8&keepalives=0" +
      "&channel_binding=prefer&pgbouncer=true&sslnegotiation=postgres",
    { pooler: "session" },
  );
  assert.equal(config.sslmode, "require");
  assert.equal(config.sslrootcert, "/ca.pem");
  assert.equal(config.applicationName, "my app"); // as URLSearchParams writes a space
  assert.equal(config.connectTimeout, 10_000);
  assert.equal(config.options, "-c search_path=app");
  assert.equal(config.keepAlive, false);
  assert.equal(config.pgbouncer, true);
});

test("parseConfig reads a URL built by URLSearchParams as it was built, '+' and all", () => {
  const values = {
    application_name: "my app + reports",
    fallback_application_name: "the fallback",
    options: "-c search_path=app,public -c statement_timeout=5s -c x.y=a+b",
    password: "p a+s/s?&=#%",
    user: "me+tag@example.com",
    dbname: "my db+1",
    host: "/var/run/postgresql",
    sslmode: "require",
  };
  const query = new URLSearchParams(values).toString();
  assert.match(query, /application_name=my\+app\+%2B\+reports/); // what is being read
  const config = parseConfig(`postgres://ignored@h/ignored?${query}`);
  assert.equal(config.applicationName, values.application_name);
  assert.equal(config.options, values.options);
  assert.equal(config.password, "p+a+s/s?&=#%"); // a space in a password: see below
  assert.equal(config.user, values.user);
  assert.equal(config.database, "my+db+1");
  assert.equal(config.host, values.host);
  assert.equal(config.sslmode, "require");
  const fallback = new URLSearchParams({
    fallback_application_name: values.fallback_application_name,
  });
  assert.equal(parseConfig(`postgres://u@h/d?${fallback}`).applicationName, "the fallback");
  // The brief's examples.
  assert.equal(parseConfig("postgres://u@h/d?application_name=my+app").applicationName, "my app");
  assert.equal(
    parseConfig("postgres://u@h/d?options=-c+search_path%3Dx", { pooler: "none" }).options,
    "-c search_path=x",
  );
});

test("parseConfig keeps '+' as typed outside application_name and options, as libpq", () => {
  const config = parseConfig(
    "postgres://a+b:p+w@h/d+b?password=pa+ss&user=u+v&dbname=x+y&sslrootcert=/etc/c++.pem",
  );
  assert.equal(config.password, "pa+ss");
  assert.equal(config.user, "u+v");
  assert.equal(config.database, "x+y");
  assert.equal(config.sslrootcert, "/etc/c++.pem");
  const parts = parseConfig("postgres://a+b:p+w@h/d+b");
  assert.deepEqual([parts.user, parts.password, parts.database], ["a+b", "p+w", "d+b"]);
  assert.equal(parseConfig("postgres://u@h/d?host=/tmp/a+b").host, "/tmp/a+b");
  // A '+' itself in application_name and options: %2B, as URLSearchParams writes it.
  assert.equal(parseConfig("postgres://u@h/d?application_name=c%2B%2B").applicationName, "c++");
  assert.equal(
    parseConfig("postgres://u@h/d?options=-c%20TimeZone%3DEtc/GMT%2B3").options,
    "-c TimeZone=Etc/GMT+3",
  );
});

test("parseConfig lets host, port, user, password and dbname parameters override the URL parts, when given", () => {
  const config = parseConfig(
    "postgres://u:p@h:1/d?host=h2&port=5439&user=u2&password=p%262&dbname=d2",
  );
  assert.deepEqual(
    [config.host, config.port, config.user, config.password, config.database],
    ["h2", 5439, "u2", "p&2", "d2"],
  );
});

test("parseConfig uses fallback_application_name, when there is no application_name", () => {
  assert.equal(parseConfig("postgres://u@h?fallback_application_name=f").applicationName, "f");
  assert.equal(
    parseConfig("postgres://u@h?fallback_application_name=f&application_name=a").applicationName,
    "a",
  );
  assert.equal(
    parseConfig("postgres://u@h?fallback_application_name=f", { applicationName: "o" })
      .applicationName,
    "o",
  );
});

test("parseConfig reads connect_timeout as libpq does, when given seconds", () => {
  const timeout = (value: string) =>
    parseConfig(`postgres://u@h?connect_timeout=${value}`).connectTimeout;
  assert.equal(timeout("0"), 0);
  assert.equal(timeout("1"), 2000);
  assert.equal(timeout("2"), 2000);
  assert.equal(timeout("45"), 45_000);
  for (const bad of ["-1", "1.5", "abc", "", "1e3", "9999999"]) {
    throwsType(`postgres://u@h?connect_timeout=${bad}`, /connect_timeout/);
  }
});

test("parseConfig maps sslmode values, when they are supported", () => {
  const mode = (value: string) => parseConfig(`postgres://u@h?sslmode=${value}`).sslmode;
  assert.equal(mode("disable"), "disable");
  assert.equal(mode("prefer"), "prefer");
  assert.equal(mode("require"), "require");
  assert.equal(mode("verify-full"), "verify-full");
  assert.equal(mode("no-verify"), "require");
  assert.equal(mode("verify-ca&sslrootcert=%2Fca.pem"), "verify-ca");
  assert.equal(
    parseConfig("postgres://u@h", { sslmode: "verify-ca", ca: "PEM" }).sslmode,
    "verify-ca",
  );
});

test("parseConfig throws TypeError, when verify-ca has no CA of its own to verify against", () => {
  throwsType(
    "postgres://u@h?sslmode=verify-ca",
    /verify-ca needs the CA.*sslrootcert.*options\.ca/,
  );
  throwsType(
    "postgres://u@h?sslmode=verify-ca&sslrootcert=system",
    /cannot be used with sslrootcert=system/,
  );
});

test("parseConfig reads sslcert, sslkey and sslpassword, from the URL or options", () => {
  const config = parseConfig(
    "postgres://u@h?sslcert=%2Fc.pem&sslkey=%2Fk.pem&sslpassword=S3cretPW&sslmode=verify-full",
  );
  assert.equal(config.sslcert, "/c.pem");
  assert.equal(config.sslkey, "/k.pem");
  assert.equal(config.sslpassword, "S3cretPW");
  const pem = parseConfig("postgres://u@h", { cert: "CERT", key: "KEY", sslpassword: "x" });
  assert.deepEqual([pem.cert, pem.key, pem.sslcert, pem.sslpassword], [
    "CERT",
    "KEY",
    undefined,
    "x",
  ]);
  const over = parseConfig("postgres://u@h?sslcert=%2Fc&sslkey=%2Fk", { sslkey: "/other" });
  assert.equal(over.sslkey, "/other");
});

test("parseConfig throws TypeError, when a client certificate comes without its key", () => {
  throwsType("postgres://u@h?sslcert=%2Fc.pem", /needs its private key/);
  throwsType("postgres://u@h?sslkey=%2Fk.pem", /needs its client certificate/);
  throwsType(undefined, /needs its private key/, { user: "u", cert: "CERT" });
  throwsType("postgres://u@h?sslcert=%2Fc&sslkey=%2Fk", /cannot both be given/, { cert: "C" });
  throwsType("postgres://u@h?sslcert=%2Fc&sslkey=%2Fk&sslmode=disable", /sslmode=disable/);
  throwsType(undefined, /options\.key must be a string/, {
    user: "u",
    key: 1 as unknown as string,
  });
});

test("parseConfig throws TypeError without the text, when PEM is given where a path goes", () => {
  const key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAS3cretKeyMaterial\n-----END PRIVATE KEY-----\n";
  for (const name of ["sslkey", "sslcert", "sslrootcert"] as const) {
    let caught: unknown;
    try {
      parseConfig(`postgres://u@h?${name}=${encodeURIComponent(key)}`, { cert: undefined });
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof TypeError, name);
    assert.match(caught.message, new RegExp(`${name} takes the path of a PEM file, not PEM text`));
    assert.ok(!caught.message.includes("S3cretKey"), caught.message);
    throwsType(undefined, /not PEM text/, { user: "u", [name]: key, cert: "c", key: "k" });
  }
});

test("parseConfig throws TypeError saying what to use, when sslmode is allow", () => {
  throwsType("postgres://u@h?sslmode=allow", /'allow' is not supported.*prefer/);
  throwsType("postgres://u@h?sslmode=bogus", /Invalid sslmode 'bogus'/);
  throwsType(undefined, /Invalid sslmode/, {
    user: "u",
    sslmode: "no-verify" as ConnectOptions["sslmode"],
  });
});

test("parseConfig uses the runtime's roots with verify-full, when sslrootcert=system", () => {
  const config = parseConfig("postgres://u@h?sslrootcert=system");
  assert.equal(config.sslrootcert, undefined);
  assert.equal(config.sslmode, "verify-full");
  throwsType("postgres://u@h?sslrootcert=system&sslmode=require", /sslrootcert=system/);
  throwsType("postgres://u@h?sslrootcert=system", /options\.ca cannot be used together/, {
    ca: "PEM",
  });
});

test("parseConfig throws TypeError, when a parameter has an unsupported value", () => {
  assert.doesNotThrow(() => parseConfig("postgres://u@h?client_encoding=utf8"));
  assert.doesNotThrow(() => parseConfig("postgres://u@h?client_encoding=UTF-8"));
  throwsType("postgres://u@h?client_encoding=LATIN1", /client_encoding 'LATIN1'/);
  throwsType("postgres://u@h?keepalives=2", /keepalives/);
  throwsType("postgres://u@h?channel_binding=require", /channel_binding=require is not supported/);
  throwsType("postgres://u@h?channel_binding=maybe", /channel_binding/);
  throwsType("postgres://u@h?pgbouncer=yes", /pgbouncer/);
  throwsType("postgres://u@h?sslnegotiation=direct", /sslnegotiation=direct is not supported/);
  assert.equal(parseConfig("postgres://u@h?channel_binding=disable").user, "u");
});

test("parseConfig throws TypeError naming the parameter, when it is unknown", () => {
  throwsType("postgres://u@h/d?foo=1", /Unknown connection parameter 'foo' in postgres:\/\/u@h\/d/);
  throwsType("postgres://u@h/d?constructor=1", /Unknown connection parameter 'constructor'/);
  throwsType("postgres://u@h/d?sslmode", /no '='/);
});

test("parseConfig throws TypeError naming the scheme, when it is not postgres: or postgresql:", () => {
  throwsType("mysql://u@h/d", /Unsupported URL scheme 'mysql:'/);
  throwsType("http://u@h/d", /'http:'/);
  throwsType("host=h user=u", /not a URL/);
  throwsType("", /empty/);
  throwsType("postgres:u@h", /Expected '\/\/'/);
  assert.throws(() => parseConfig(42 as unknown as string), TypeError);
});

test("parseConfig takes a host that starts with '/' as a Unix socket's directory, in each form", () => {
  const forms: [string | undefined, ConnectOptions?][] = [
    ["postgres://u@%2Fvar%2Frun%2Fpostgresql/d"],
    ["postgres://u@%2fvar%2frun%2fpostgresql:5433/d"],
    ["postgres:///d?host=/var/run/postgresql&user=u"],
    ["postgres://u@/d?host=%2Fvar%2Frun%2Fpostgresql&port=5433"],
    ["postgres://u@h:5433/d?host=/var/run/postgresql"],
    ["postgres://u@h/d", { host: "/var/run/postgresql" }],
    [undefined, { user: "u", database: "d", host: "/var/run/postgresql", port: 5433 }],
  ];
  for (const [url, options] of forms) {
    const config = parseConfig(url, options);
    assert.equal(config.host, "/var/run/postgresql", url);
    assert.equal(config.database, "d", url);
    assert.equal(config.pooler, "none", url);
    // sslmode keeps its value; the transports leave TLS out on a socket, as libpq.
    assert.equal(config.sslmode, "prefer", url);
  }
  assert.equal(parseConfig("postgres:///d?host=/var/run/postgresql&user=u").port, 5432);
  assert.equal(parseConfig("postgres://u@%2Ftmp:5433/d").port, 5433);
  assert.equal(unixSocketPath("/var/run/postgresql", 5433), "/var/run/postgresql/.s.PGSQL.5433");
  assert.equal(unixSocketPath("/tmp/", 5432), "/tmp/.s.PGSQL.5432");
  assert.equal(unixSocketPath("/", 5432), "/.s.PGSQL.5432");
  assert.equal(unixSocketPath("db.example.com", 5432), undefined);
  assert.equal(unixSocketPath("::1", 5432), undefined);
  assert.equal(serverAddress("/tmp", 6432), "/tmp/.s.PGSQL.6432");
  assert.equal(serverAddress("db", 6432), "db:6432");
});

test("parseConfig hides the password of a Unix socket URL in its messages", () => {
  const url = `postgres://u:${PW}@%2Fvar%2Frun%2Fpostgresql/d`;
  assert.equal(redactUrl(url), "postgres://u:***@%2Fvar%2Frun%2Fpostgresql/d");
  throwsType(`${url}?nope=1`, /Unknown connection parameter 'nope' in postgres:\/\/u:\*\*\*@%2F/);
  assert.throws(() => parseConfig(`${url}?nope=1`), (e: Error) => !e.message.includes(PW));
});

test("parseConfig throws TypeError, when the host is an abstract socket", () => {
  throwsType("postgres://u@%40pg/d", /Abstract Unix-domain sockets/);
  throwsType("postgres://u@h/d?host=@pg", /Abstract Unix-domain sockets/);
  throwsType(
    undefined,
    /Abstract Unix-domain sockets \('@' hosts\) are not supported \(options\.host\)/,
    {
      user: "u",
      host: "@pg",
    },
  );
  throwsType(undefined, /must not be empty/, { user: "u", host: "" });
});

test("parseConfig reads host lists as libpq does, each host with its port", () => {
  const hosts = (url: string, options?: ConnectOptions) => parseConfig(url, options).hosts;
  assert.deepEqual(hosts("postgres://u@h1:5432,h2:5433/d"), [
    { host: "h1", port: 5432 },
    { host: "h2", port: 5433 },
  ]);
  assert.deepEqual(hosts("postgres://u@h1,[::1]:6000,/d"), [
    { host: "h1", port: 5432 },
    { host: "::1", port: 6000 },
    { host: "localhost", port: 5432 },
  ]);
  assert.deepEqual(hosts("postgres://u@/d?host=a,b&port=1,2"), [
    { host: "a", port: 1 },
    { host: "b", port: 2 },
  ]);
  assert.deepEqual(hosts("postgres://u@/d?host=a,b&port=7"), [
    { host: "a", port: 7 },
    { host: "b", port: 7 },
  ]);
  assert.deepEqual(hosts("postgres://u@/d?host=a,b&port=,9"), [
    { host: "a", port: 5432 },
    { host: "b", port: 9 },
  ]);
  assert.deepEqual(hosts("postgres://u@x/d", { host: "p, q", port: 6 }), [
    { host: "p", port: 6 },
    { host: "q", port: 6 },
  ]);
  const config = parseConfig(
    "postgres://u@a,b/d?target_session_attrs=read-write&load_balance_hosts=random",
  );
  assert.equal(config.host, "a");
  assert.equal(config.targetSessionAttrs, "read-write");
  assert.equal(config.loadBalanceHosts, true);
  assert.equal(
    parseConfig("postgres://u@a/d", { targetSessionAttrs: "standby" }).targetSessionAttrs,
    "standby",
  );
  throwsType("postgres://u@/d?host=a,b,c&port=1,2", /2 ports do not match 3 hosts/);
  throwsType(
    "postgres://u@a,b/d?target_session_attrs=master",
    /Invalid target_session_attrs 'master'.*read-write/,
  );
  throwsType("postgres://u@a/d?load_balance_hosts=yes", /Invalid load_balance_hosts/);
  throwsType(undefined, /targetSessionAttrs/, { user: "u", targetSessionAttrs: "rw" as "any" });
});

test("parseConfig throws RangeError or TypeError, when the port is not 1..65535", () => {
  assert.throws(() => parseConfig("postgres://u@h:0/d"), RangeError);
  assert.throws(() => parseConfig("postgres://u@h:65536/d"), RangeError);
  assert.throws(() => parseConfig("postgres://u@h/d?port=70000"), RangeError);
  assert.throws(() => parseConfig("postgres://u@h:abc/d"), TypeError);
  assert.throws(() => parseConfig(undefined, { user: "u", port: 0 }), RangeError);
  assert.throws(() => parseConfig(undefined, { user: "u", port: 1.5 }), RangeError);
  assert.throws(
    () => parseConfig(undefined, { user: "u", port: "5432" as unknown as number }),
    TypeError,
  );
  assert.equal(parseConfig("postgres://u@h:65535/d").port, 65535);
});

test("parseConfig throws RangeError, when connectTimeout or maxMessageSize is out of range", () => {
  for (const connectTimeout of [-1, NaN, Infinity, 2 ** 31]) {
    assert.throws(() => parseConfig(undefined, { user: "u", connectTimeout }), RangeError);
  }
  assert.equal(parseConfig(undefined, { user: "u", connectTimeout: 0 }).connectTimeout, 0);
  for (const maxMessageSize of [1023, 0, 2048.5, NaN]) {
    assert.throws(() => parseConfig(undefined, { user: "u", maxMessageSize }), RangeError);
  }
  assert.equal(parseConfig(undefined, { user: "u", maxMessageSize: 1024 }).maxMessageSize, 1024);
});

test("parseConfig throws TypeError, when an option has the wrong type", () => {
  const bad: Record<string, unknown>[] = [
    { password: 42 },
    { bigint: "yes" },
    { keepAlive: 1 },
    { ca: [1] },
    { database: 5 },
    { transport: {} },
    { signal: "stop" },
    { onNotice: "log" },
    { pipelineConnect: true },
    { pipelineConnect: "md5" },
  ];
  for (const options of bad) {
    assert.throws(() => parseConfig(undefined, { user: "u", ...options }), TypeError);
  }
  assert.throws(() => parseConfig(undefined, null as unknown as ConnectOptions), TypeError);
});

test('parseConfig keeps pipelineConnect, when it is "password" or false', () => {
  for (const value of ["password", false, undefined] as const) {
    assert.equal(parseConfig("postgres://u@h", { pipelineConnect: value }).pipelineConnect, value);
  }
});

test("parseConfig throws TypeError, when no user name is given anywhere", () => {
  throwsType("postgres://h/d", /no user name given in postgres:\/\/h\/d/);
  throwsType(undefined, /no user name given/);
  throwsType("postgres://:pw@h/d", /no user name given/);
  assert.equal(parseConfig("postgres://h/d", { user: "u" }).user, "u");
});

test("parseConfig never shows the password, when it throws for a bad URL", () => {
  const bad: [string, ConnectOptions?][] = [
    [`mysql://u:${PW}@h/d`],
    [`postgres://u:${PW}@h/d?foo=1`],
    [`postgres://u:${PW}@h/d?sslmode=allow`],
    [`postgres://u:${PW}@h/d?sslmode=verify-ca`],
    [`postgres://u@h/d?sslpassword=${PW}&sslcert=%2Fc`],
    [`postgres://u@h/d?sslpassword=${PW}&foo=1`],
    [`postgres://u:${PW}@h/d?connect_timeout=-1`],
    [`postgres://u:${PW}@h:0/d`],
    [`postgres://u:${PW}@h1,[::1/d`],
    [`postgres://u:${PW}@%40abstract/d`],
    [`postgres://u:${PW}@h/d?client_encoding=LATIN1`],
    [`postgres://u:${PW}@h/d?sslrootcert=system&sslmode=prefer`],
    [`postgres://u:${PW}@h/%zz`],
    [`postgres://h/d?password=${PW}`],
    [`postgres://h/d?password=${PW}&foo=1`],
    [`postgres://h/d?pass%77ord=${PW}&foo=1`],
    [`postgres://u:${PW}@[::1/d`],
    // Malformed: an unencoded '/', '?' or '#' in the password; `new URL` rejects these.
    [`postgres://u:Sup3r/S3cretPW@h/d`],
    [`postgres://u:Sup3r?S3cretPW@h/d`],
    [`postgres://u:Sup3r#S3cretPW@h:99999/d`],
    [`postgres://u:1234/S3cretPW@h/d`],
    [`postgres://u:1234?S3cretPW@h/d`],
    [`postgres:u:${PW}@h/d`],
    [`u:${PW}@h/d`],
    [`host=h password=${PW}`],
    [`postgres://u:${PW}@h/d`, { port: 0 }],
  ];
  for (const [url, options] of bad) {
    let caught: unknown;
    try {
      parseConfig(url, options);
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof TypeError || caught instanceof RangeError, `no error for ${url}`);
    const shown = `${caught.message}\n${caught.stack}\n${String(caught.cause ?? "")}`;
    assert.ok(!shown.includes("S3cret"), `password shown for ${url}: ${caught.message}`);
  }
});

test("redactUrl replaces the password with ***, when the URL has one", () => {
  assert.equal(redactUrl(`postgres://u:${PW}@h:5432/d`), "postgres://u:***@h:5432/d");
  assert.equal(redactUrl(`postgres://u:p%40ss@h/d`), "postgres://u:***@h/d");
  assert.equal(redactUrl(`postgres://u:a:b@c@h/d`), "postgres://u:***@h/d");
  assert.equal(
    redactUrl(`postgres://u@h/d?sslmode=require&password=${PW}&x=1`),
    "postgres://u@h/d?sslmode=require&password=***&x=1",
  );
  assert.equal(
    redactUrl(`postgres://u@h/d?sslkey=%2Fk&sslpassword=${PW}`),
    "postgres://u@h/d?sslkey=%2Fk&sslpassword=***",
  );
  assert.equal(redactUrl(`postgres://u:Sup3r/S3cret@h/d`), "postgres://u:***@h/d");
  assert.equal(redactUrl(`u:${PW}@h`), "u:***@h");
  assert.equal(redactUrl(`host=h password='a b' user=u`), "host=h password=*** user=u");
});

test("redactUrl leaves the URL unchanged, when it has no password", () => {
  for (
    const url of [
      "postgres://u@h:5432/d?sslmode=require",
      "postgres://h:5432/d?application_name=a@b",
      "postgres://[::1]:5432/d",
      "postgres://u:@h/d",
      "not a url at all",
      "",
    ]
  ) {
    assert.equal(redactUrl(url), url);
  }
});

test("redactUrl never throws, when given broken input", () => {
  for (const url of ["%", "postgres://%zz:%zz@h?%zz=%zz", "::::@@@@", "?password", "//:@"]) {
    assert.equal(typeof redactUrl(url), "string");
  }
});

test("parseConfig guesses the pooler from the URL with pooler auto, and says why", () => {
  const guess = (url: string) => {
    const config = parseConfig(url);
    return [config.pooler, config.poolerSign];
  };
  assert.deepEqual(guess("postgres://u@h/d?pgbouncer=true"), [
    "transaction",
    "pgbouncer=true in the URL",
  ]);
  assert.deepEqual(guess("postgres://u@db.example.com:6543/d"), ["transaction", "port 6543"]);
  assert.deepEqual(guess("postgres://u@ep-cool-123-pooler.us-east-2.aws.neon.tech/d"), [
    "transaction",
    "a -pooler host name",
  ]);
  assert.deepEqual(guess("postgres://u@aws-0-eu-west-1.pooler.supabase.com:5432/d"), [
    "session",
    "a pooler.supabase.com host on port 5432",
  ]);
  assert.deepEqual(guess("postgres://u@aws-0-eu-west-1.pooler.supabase.com:6543/d"), [
    "transaction",
    "a pooler.supabase.com host on port 6543",
  ]);
  assert.deepEqual(guess("postgres://u@db.example.com/d"), [
    "none",
    "no sign of a pooler in the URL",
  ]);
  // Given, it wins over every sign.
  const given = parseConfig("postgres://u@h:6543/d?pgbouncer=true", { pooler: "none" });
  assert.deepEqual([given.pooler, given.poolerSign], ["none", "options.pooler"]);
  assert.equal(parseConfig("postgres://u@h/d", { pooler: "auto" }).pooler, "none");
});

test("parseConfig refuses what a transaction pooler cannot take, naming the sign", () => {
  assert.throws(
    () => parseConfig("postgres://u@h:6543/d?options=-c%20search_path%3Dapp"),
    (error: unknown) =>
      error instanceof TypeError && /options startup parameter/.test(error.message) &&
      /port 6543/.test(error.message) && /SET LOCAL/.test(error.message),
  );
  assert.throws(
    () => parseConfig("postgres://u@h/d", { pooler: "transaction", statementCache: 100 }),
    (error: unknown) =>
      error instanceof TypeError && /statementCache/.test(error.message) &&
      /options\.pooler/.test(error.message),
  );
  // Neon's routing parameter goes to its proxy, not to PgBouncer: allowed.
  const neon = parseConfig("postgres://u@ep-x-pooler.neon.tech/d?options=endpoint%3Dep-x");
  assert.equal(neon.options, "endpoint=ep-x");
  // Session mode keeps the session: both allowed.
  const session = parseConfig("postgres://u@h/d?options=-c%20x%3Dy", {
    pooler: "session",
    statementCache: 100,
  });
  assert.equal(session.statementCache, 100);
});

test("parseConfig: the statement cache is on by default, cautious only under a guess", () => {
  const cache = (url: string, options?: Parameters<typeof parseConfig>[1]) => {
    const c = parseConfig(url, options);
    return [c.statementCache, c.statementCacheCautious];
  };
  assert.deepEqual(cache("postgres://u@h/d"), [100, true]);
  assert.deepEqual(cache("postgres://u@h:6543/d"), [0, false]);
  assert.deepEqual(cache("postgres://u@h/d?pgbouncer=true"), [0, false]);
  assert.deepEqual(cache("postgres://u@h/d", { pooler: "none" }), [100, false]);
  assert.deepEqual(cache("postgres://u@h/d", { pooler: "session" }), [100, false]);
  assert.deepEqual(cache("postgres://u@h/d", { pooler: "transaction" }), [0, false]);
  assert.deepEqual(cache("postgres://u@h/d", { statementCache: 20 }), [20, false]);
  assert.deepEqual(cache("postgres://u@h/d", { statementCache: 0 }), [0, false]);
});

test("parseConfig rejects a bad pooler or statementCache with the value in the message", () => {
  assert.throws(
    () => parseConfig("postgres://u@h/d", { pooler: "statement" as "none" }),
    /options\.pooler must be "none", "transaction", "session" or "auto", not "statement"/,
  );
  assert.throws(
    () => parseConfig("postgres://u@h/d", { statementCache: -1 }),
    /statementCache must be an integer from 0 to 10000, got -1/,
  );
});

test("parseConfig takes the runtime's default application_name below the URL's and the option's", () => {
  const defaults = { applicationName: "edgepool:app.ts@deno" };
  assert.equal(
    parseConfig("postgres://u@h/d", {}, defaults).applicationName,
    defaults.applicationName,
  );
  assert.equal(
    parseConfig("postgres://u@h/d?fallback_application_name=f", {}, defaults).applicationName,
    "f",
  );
  assert.equal(
    parseConfig("postgres://u@h/d?application_name=a", {}, defaults).applicationName,
    "a",
  );
  assert.equal(
    parseConfig("postgres://u@h/d", { applicationName: "o" }, defaults).applicationName,
    "o",
  );
});
