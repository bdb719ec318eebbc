// gateway/options.ts: the one declaration of the gateway's options, what startGateway() and the
// CLI both check with, and the doc comments that state the same defaults as the table.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startGateway } from "../gateway/mod.ts";
import {
  GATEWAY_OPTIONS,
  type GatewayOptions,
  type OptionSpec,
  resolveOptions,
} from "../gateway/options.ts";

const REQUIRED = { listen: "127.0.0.1:0", upstream: "127.0.0.1:5432" };
const specs = Object.entries(GATEWAY_OPTIONS) as [keyof GatewayOptions, OptionSpec][];

test("GATEWAY_OPTIONS' defaults are the ones GatewayOptions' doc comments state", () => {
  const source = readFileSync(new URL("../gateway/options.ts", import.meta.url), "utf8");
  const body = source.slice(source.indexOf("export interface GatewayOptions"));
  for (const [key, spec] of specs) {
    // The doc comment right before `key?:` in the interface.
    const match = new RegExp(`/\\*\\*((?:(?!\\*/)[\\s\\S])*)\\*/\\s*${key}\\??:`).exec(body);
    assert.ok(match, `${key} has a doc comment`);
    const doc = match[1].replace(/\s*\*\s*/g, " ");
    if ("default" in spec) {
      const stated = /Default `?"?([\w-]+)"?`?\./.exec(doc);
      assert.ok(stated, `${key}'s doc comment states its default`);
      assert.equal(stated[1], String(spec.default), `${key}'s default`);
    } else if (!spec.required) {
      assert.match(doc, /Default:/, `${key}'s doc comment says what happens without it`);
    }
  }
});

test("resolveOptions fills in every default, and keeps what it is given", () => {
  const resolved = resolveOptions(REQUIRED);
  for (const [key, spec] of specs) {
    if ("default" in spec) assert.equal(resolved[key], spec.default, key);
  }
  assert.deepEqual(resolved.logger, {});
  assert.equal(resolved.allow, undefined);
  const allow = /db:\d+/;
  const given = resolveOptions({ ...REQUIRED, allow, poolSize: 3, headerTimeout: 0 });
  assert.equal(given.allow, allow);
  assert.equal(given.poolSize, 3);
  assert.equal(given.headerTimeout, 0);
});

test("resolveOptions refuses a missing or bad option with an error naming it", () => {
  const cases: [Record<string, unknown>, ErrorConstructor, RegExp][] = [
    [{ listen: "127.0.0.1:0" }, TypeError, /^upstream is required$/],
    [{ ...REQUIRED, listen: "nowhere" }, TypeError, /^listen must be host:port/],
    [{ ...REQUIRED, upstream: "127.0.0.1:0" }, TypeError, /^upstream must be host:port/],
    [{ ...REQUIRED, poolSize: 0 }, RangeError, /^poolSize must be a whole number from 1/],
    [{ ...REQUIRED, maxPools: 1.5 }, RangeError, /^maxPools must be a whole number/],
    [{ ...REQUIRED, maxSessions: "9" }, RangeError, /^maxSessions must be a whole number/],
    [
      { ...REQUIRED, headerTimeout: -1 },
      RangeError,
      /^headerTimeout must be a whole number from 0/,
    ],
    [
      { ...REQUIRED, connectTimeout: 0 },
      RangeError,
      /^connectTimeout must be a whole number from 1/,
    ],
    [{ ...REQUIRED, upstreamSslmode: "allow" }, TypeError, /^upstreamSslmode must be one of/],
    [{ ...REQUIRED, relay: "yes" }, TypeError, /^relay must be true or false/],
    [{ ...REQUIRED, allow: "db:5432" }, TypeError, /^allow must be a RegExp/],
    [{ ...REQUIRED, tls: { cert: "x" } }, TypeError, /^tls must be \{ cert, key \}/],
  ];
  for (const [options, type, message] of cases) {
    assert.throws(
      () => resolveOptions(options as unknown as GatewayOptions),
      (e) => e instanceof type && message.test((e as Error).message),
      JSON.stringify(options),
    );
  }
  // The CLI names its flags instead.
  assert.throws(
    () => resolveOptions({ ...REQUIRED, poolSize: 0 }, (key) => `--${key}`),
    /^RangeError: --poolSize must be/,
  );
});

test("startGateway refuses a bad option before it listens", async () => {
  await assert.rejects(
    startGateway({ ...REQUIRED, maxSessions: 0 }),
    (e) => e instanceof RangeError && /maxSessions/.test(e.message),
  );
});
