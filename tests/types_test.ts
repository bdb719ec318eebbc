import { test } from "node:test";
import assert from "node:assert/strict";
import { Oid, serializeParam, type TextParser, textParser } from "../src/types.ts";

// Fixtures are text as PostgreSQL 15 prints it (ISO DateStyle, bytea_output hex unless noted).

function parser(oid: number, bigint = false): TextParser {
  const parse = textParser(oid, { bigint });
  assert.ok(parse, `expected a parser for OID ${oid}`);
  return parse;
}

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);

/** The escape form the server prints with `bytea_output = escape`. */
function escapeBytea(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) {
    if (b === 92) out += "\\\\";
    else if (b < 32 || b > 126) out += "\\" + b.toString(8).padStart(3, "0");
    else out += String.fromCharCode(b);
  }
  return out;
}

const iso = (value: unknown): string => (value as Date).toISOString();

// ---------------------------------------------------------------------------------------------
// Oid

test("Oid holds the pg_type OIDs of scalars and arrays", () => {
  assert.equal(Oid.bool, 16);
  assert.equal(Oid.int8, 20);
  assert.equal(Oid.timestamptz, 1184);
  assert.equal(Oid.jsonb, 3802);
  assert.equal(Oid._json, 199);
  assert.equal(Oid._timestamp, 1115);
  assert.equal(Oid._jsonb, 3807);
  assert.equal(Object.keys(Oid).length, 38);
});

// ---------------------------------------------------------------------------------------------
// Scalars

test("textParser(bool) parses t and f", () => {
  const parse = parser(Oid.bool);
  assert.equal(parse("t"), true);
  assert.equal(parse("f"), false);
});

test("textParser(int2, int4, oid) parses numbers", () => {
  assert.equal(parser(Oid.int2)("-32768"), -32768);
  assert.equal(parser(Oid.int4)("2147483647"), 2147483647);
  assert.equal(parser(Oid.oid)("4294967295"), 4294967295);
});

test("textParser(int8) keeps the string by default", () => {
  assert.equal(textParser(Oid.int8, { bigint: false }), undefined);
  assert.equal(textParser(Oid.int8), undefined);
  assert.deepEqual(parser(Oid._int8)("{9223372036854775807,NULL}"), ["9223372036854775807", null]);
});

test("textParser(int8) parses bigint with the bigint option", () => {
  assert.equal(parser(Oid.int8, true)("-9223372036854775808"), -9223372036854775808n);
  assert.deepEqual(parser(Oid._int8, true)("{{1,2},{NULL,9223372036854775807}}"), [
    [1n, 2n],
    [null, 9223372036854775807n],
  ]);
  assert.equal(parser(Oid.int4, true)("7"), 7);
});

test("textParser(numeric) keeps the string", () => {
  assert.equal(textParser(Oid.numeric, { bigint: true }), undefined);
  assert.deepEqual(parser(Oid._numeric)("{3.14159265358979323846,NaN,NULL}"), [
    "3.14159265358979323846",
    "NaN",
    null,
  ]);
});

test("textParser(float4, float8) parses NaN and infinities", () => {
  for (const oid of [Oid.float4, Oid.float8]) {
    const parse = parser(oid);
    assert.equal(parse("1.5"), 1.5);
    assert.equal(parse("-1e-300"), -1e-300);
    assert.ok(Number.isNaN(parse("NaN")));
    assert.equal(parse("Infinity"), Infinity);
    assert.equal(parse("-Infinity"), -Infinity);
  }
  const array = parser(Oid._float8)("{1.5,NaN,Infinity,-Infinity,NULL}") as unknown[];
  assert.equal(array[0], 1.5);
  assert.ok(Number.isNaN(array[1]));
  assert.deepEqual(array.slice(2), [Infinity, -Infinity, null]);
});

test("textParser returns undefined for string types and unknown OIDs", () => {
  const unknown = [0, 705, 1560, 1561, 99999]; // unknown, bit, _bit
  for (const oid of [Oid.text, Oid.varchar, Oid.bpchar, Oid.name, Oid.uuid, Oid.date, ...unknown]) {
    assert.equal(textParser(oid, { bigint: false }), undefined, `OID ${oid}`);
  }
});

test("textParser parses every array type of Oid, whose table lists the OIDs by number", () => {
  for (const [name, oid] of Object.entries(Oid)) {
    if (!name.startsWith("_")) continue;
    assert.deepEqual(parser(oid)("{}"), [], name);
    assert.deepEqual(parser(oid)("{NULL}"), [null], name);
  }
});

test("textParser returns the same function for every column of a type", () => {
  assert.equal(parser(Oid.timestamptz), parser(Oid.timestamptz));
  assert.equal(parser(Oid._int4), parser(Oid._int4));
  assert.equal(parser(Oid._int8, true), parser(Oid._int8, true));
});

test("textParser(json, jsonb) parses JSON", () => {
  assert.deepEqual(parser(Oid.json)('{"a": [1, "x\\"y", null]}'), { a: [1, 'x"y', null] });
  assert.deepEqual(parser(Oid.jsonb)('"é"'), "é");
  assert.equal(parser(Oid.jsonb)("null"), null);
  assert.throws(() => parser(Oid.json)("{"), SyntaxError);
});

// ---------------------------------------------------------------------------------------------
// bytea

test("textParser(bytea) decodes the hex format", () => {
  const parse = parser(Oid.bytea);
  assert.deepEqual(parse("\\x"), new Uint8Array());
  assert.deepEqual(parse("\\x00ff5c0A1b"), new Uint8Array([0, 255, 0x5c, 10, 0x1b]));
});

test("textParser(bytea) decodes all 256 bytes in hex", () => {
  const hex = "\\x" + Array.from(allBytes, (b) => b.toString(16).padStart(2, "0")).join("");
  assert.deepEqual(parser(Oid.bytea)(hex), allBytes);
});

test("textParser(bytea) decodes the escape format", () => {
  const parse = parser(Oid.bytea);
  assert.deepEqual(parse(""), new Uint8Array());
  assert.deepEqual(parse('\\000\\001\\\\"\\377A'), new Uint8Array([0, 1, 92, 34, 255, 65]));
});

test("textParser(bytea) decodes all 256 bytes in the escape format", () => {
  const text = escapeBytea(allBytes);
  assert.ok(text.startsWith("\\000\\001") && text.includes("[\\\\]") && text.endsWith("\\377"));
  assert.deepEqual(parser(Oid.bytea)(text), allBytes);
});

test("textParser(bytea) throws SyntaxError on malformed hex", () => {
  const parse = parser(Oid.bytea);
  assert.throws(() => parse("\\x0"), SyntaxError);
  assert.throws(() => parse("\\x0g"), SyntaxError);
  assert.throws(() => parse("\\x0\u0130"), SyntaxError);
  assert.throws(() => parse("\\400"), SyntaxError);
});

// ---------------------------------------------------------------------------------------------
// date and timestamps

test("textParser(date) keeps the YYYY-MM-DD string", () => {
  assert.equal(textParser(Oid.date, { bigint: false }), undefined);
  assert.deepEqual(parser(Oid._date)('{2024-02-29,infinity,NULL,"0044-03-15 BC"}'), [
    "2024-02-29",
    "infinity",
    null,
    "0044-03-15 BC",
  ]);
});

test("textParser(timestamptz) parses whole-hour offsets", () => {
  const parse = parser(Oid.timestamptz);
  assert.equal(iso(parse("2024-02-29 13:45:07+00")), "2024-02-29T13:45:07.000Z");
  assert.equal(iso(parse("2024-02-29 13:45:07+05")), "2024-02-29T08:45:07.000Z");
  assert.equal(iso(parse("2024-01-01 01:00:00-11")), "2024-01-01T12:00:00.000Z");
});

test("textParser(timestamptz) parses offsets with minutes", () => {
  const parse = parser(Oid.timestamptz);
  assert.equal(iso(parse("2020-01-01 00:00:00-03:30")), "2020-01-01T03:30:00.000Z");
  assert.equal(iso(parse("2020-01-01 05:30:00+05:30")), "2020-01-01T00:00:00.000Z");
});

test("textParser(timestamptz) parses offsets with seconds", () => {
  const parse = parser(Oid.timestamptz);
  // Asia/Kolkata and Europe/Amsterdam local mean time, as PostgreSQL prints them.
  assert.equal(iso(parse("1900-01-01 00:00:00+05:21:10")), "1899-12-31T18:38:50.000Z");
  assert.equal(iso(parse("1900-01-01 00:00:00+00:19:32")), "1899-12-31T23:40:28.000Z");
  assert.equal(iso(parse("1900-01-01 00:00:00-00:53:28")), "1900-01-01T00:53:28.000Z");
});

test("textParser(timestamptz) parses fractional seconds, truncated to milliseconds", () => {
  const parse = parser(Oid.timestamptz);
  assert.equal(iso(parse("2020-01-01 00:00:00.5+00")), "2020-01-01T00:00:00.500Z");
  assert.equal(iso(parse("2020-01-01 00:00:00.12+00")), "2020-01-01T00:00:00.120Z");
  assert.equal(iso(parse("2020-01-01 00:00:00.123+00")), "2020-01-01T00:00:00.123Z");
  assert.equal(iso(parse("2020-01-01 00:00:00.999999+00")), "2020-01-01T00:00:00.999Z");
  assert.equal(iso(parse("2020-06-01 12:34:56.789012-02:30")), "2020-06-01T15:04:56.789Z");
});

test("textParser(timestamptz) parses BC years, 1 BC being ISO year 0", () => {
  const parse = parser(Oid.timestamptz);
  assert.equal(iso(parse("0001-01-01 00:00:00+00 BC")), "0000-01-01T00:00:00.000Z");
  assert.equal(iso(parse("0001-02-29 00:00:00+00 BC")), "0000-02-29T00:00:00.000Z");
  assert.equal(iso(parse("0044-03-15 12:00:00+00 BC")), "-000043-03-15T12:00:00.000Z");
  assert.equal(iso(parse("4713-01-01 00:00:00-03:30:52 BC")), "-004712-01-01T03:30:52.000Z");
});

test("textParser(timestamptz) parses years 1 to 99 without the 1900 shift", () => {
  const parse = parser(Oid.timestamptz);
  assert.equal(iso(parse("0001-01-01 00:00:00+00")), "0001-01-01T00:00:00.000Z");
  assert.equal(iso(parse("0099-12-31 23:00:00-02")), "0100-01-01T01:00:00.000Z");
  assert.equal(iso(parse("0004-02-29 00:00:00+00")), "0004-02-29T00:00:00.000Z");
});

test("textParser(timestamptz) parses years beyond 9999", () => {
  const parse = parser(Oid.timestamptz);
  assert.equal(iso(parse("10000-01-01 00:00:00+00")), "+010000-01-01T00:00:00.000Z");
  assert.equal(iso(parse("275760-09-13 00:00:00+00")), "+275760-09-13T00:00:00.000Z");
});

test("textParser(timestamptz) keeps dates out of the range of Date as strings", () => {
  const parse = parser(Oid.timestamptz);
  assert.equal(parse("294276-12-31 23:59:59+00"), "294276-12-31 23:59:59+00");
  assert.equal(parse("275760-09-13 00:00:00-01"), "275760-09-13 00:00:00-01");
});

test("textParser(timestamptz) returns infinity and -infinity unchanged", () => {
  assert.equal(parser(Oid.timestamptz)("infinity"), "infinity");
  assert.equal(parser(Oid.timestamptz)("-infinity"), "-infinity");
  assert.equal(parser(Oid.timestamp)("infinity"), "infinity");
});

test("textParser(timestamptz) keeps non-ISO DateStyle output as strings", () => {
  const parse = parser(Oid.timestamptz);
  for (
    const text of [
      "11/21/2026 17:14:33.161924 UTC", // SQL
      "21.11.2026 17:14:33.161924 UTC", // German
      "Sat 21 Nov 17:14:33.161924 2026 UTC", // Postgres
      "2026-11-21", // a date, not a timestamp
      "2026-11-21 17:14", // no seconds
      "2026-13-21 17:14:33+00", // month 13
      "2026-11-21 17:14:33+0", // offset with one digit
      "2026-11-21 17:14:33+00 AD",
      "2026-11-21 17:14:33+00 BCE",
      "26-11-21 17:14:33+00", // two-digit year
      "",
    ]
  ) {
    assert.equal(parse(text), text);
  }
});

test("textParser(timestamp) reads values without time zone as UTC", () => {
  const parse = parser(Oid.timestamp);
  assert.equal(iso(parse("2024-02-29 13:45:07.25")), "2024-02-29T13:45:07.250Z");
  assert.equal(iso(parse("0044-03-15 12:00:00 BC")), "-000043-03-15T12:00:00.000Z");
  assert.equal(iso(parse("10000-06-01 12:00:00")), "+010000-06-01T12:00:00.000Z");
  assert.equal(parse("01/01/2020 00:00:00"), "01/01/2020 00:00:00");
});

// ---------------------------------------------------------------------------------------------
// Arrays

test("textParser(_text) parses quotes, backslashes, NULL and empty strings", () => {
  const parse = parser(Oid._text);
  assert.deepEqual(parse('{"a b","with \\"quote\\"","\\\\","NULL","",NULL,ü}'), [
    "a b",
    'with "quote"',
    "\\",
    "NULL",
    "",
    null,
    "ü",
  ]);
  assert.deepEqual(parse('{" lead","trail ","a,b","{x}","x\\"y","back\\\\slash"}'), [
    " lead",
    "trail ",
    "a,b",
    "{x}",
    'x"y',
    "back\\slash",
  ]);
});

test("textParser(_text) reads unquoted NULL in any case", () => {
  assert.deepEqual(parser(Oid._text)("{NULL,null,nUlL,NULLS,NUL}"), [
    null,
    null,
    null,
    "NULLS",
    "NUL",
  ]);
  assert.deepEqual(parser(Oid._int4)("{NULL,1}"), [null, 1]);
});

test("textParser(_int4) parses empty and nested arrays", () => {
  const parse = parser(Oid._int4);
  assert.deepEqual(parse("{}"), []);
  assert.deepEqual(parse("{{1,2},{3,4}}"), [[1, 2], [3, 4]]);
  assert.deepEqual(parse("{{{1},{2}},{{3},{4}}}"), [[[1], [2]], [[3], [4]]]);
  assert.deepEqual(parser(Oid._text)("{{a,b},{NULL,c}}"), [["a", "b"], [null, "c"]]);
});

test("textParser(_int4) skips dimension prefixes", () => {
  const parse = parser(Oid._int4);
  assert.deepEqual(parse("[0:1]={1,2}"), [1, 2]);
  assert.deepEqual(parse("[0:1][1:2]={{1,2},{3,4}}"), [[1, 2], [3, 4]]);
});

test("textParser(_bool, _int2, _oid, _float4, _varchar, _uuid) parse their elements", () => {
  assert.deepEqual(parser(Oid._bool)("{t,f,NULL}"), [true, false, null]);
  assert.deepEqual(parser(Oid._int2)("{-1,2}"), [-1, 2]);
  assert.deepEqual(parser(Oid._oid)("{4294967295}"), [4294967295]);
  assert.deepEqual(parser(Oid._float4)("{1.25}"), [1.25]);
  assert.deepEqual(parser(Oid._varchar)('{a,"b c"}'), ["a", "b c"]);
  assert.deepEqual(parser(Oid._bpchar)('{"a  "}'), ["a  "]);
  assert.deepEqual(parser(Oid._name)("{pg_class}"), ["pg_class"]);
  assert.deepEqual(parser(Oid._uuid)("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"), [
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
  ]);
});

test("textParser(_bytea) decodes hex and escape elements", () => {
  const parse = parser(Oid._bytea);
  assert.deepEqual(parse('{"\\\\x00ff5c",NULL,"\\\\x"}'), [
    new Uint8Array([0, 255, 92]),
    null,
    new Uint8Array(),
  ]);
  // bytea_output = escape
  assert.deepEqual(parse('{"\\\\000\\\\377\\\\\\\\\\""}'), [new Uint8Array([0, 255, 92, 34])]);
});

test("textParser(_json, _jsonb) parse each element", () => {
  assert.deepEqual(parser(Oid._jsonb)('{"{\\"a\\": [1, \\"x\\\\\\"y\\"]}",NULL,"null",3}'), [
    { a: [1, 'x"y'] },
    null,
    null,
    3,
  ]);
  assert.deepEqual(parser(Oid._json)('{"[1,2]"}'), [[1, 2]]);
});

test("textParser(_timestamptz) parses Dates and keeps infinity", () => {
  const parsed = parser(Oid._timestamptz)(
    '{"2020-06-01 12:34:56.789012-02:30",infinity,"0044-03-15 12:00:00-03:30:52 BC",NULL}',
  ) as unknown[];
  assert.equal(iso(parsed[0]), "2020-06-01T15:04:56.789Z");
  assert.equal(parsed[1], "infinity");
  assert.equal(iso(parsed[2]), "-000043-03-15T15:30:52.000Z");
  assert.equal(parsed[3], null);
  assert.equal(
    iso((parser(Oid._timestamp)('{"2020-01-01 00:00:00"}') as Date[])[0]),
    "2020-01-01T00:00:00.000Z",
  );
});

test("textParser(_text) throws SyntaxError on malformed literals", () => {
  const parse = parser(Oid._text);
  assert.throws(() => parse("{a,b"), SyntaxError);
  assert.throws(() => parse('{"a'), SyntaxError);
  assert.throws(() => parse("{{a}"), SyntaxError);
  assert.throws(() => parse("a,b"), SyntaxError);
});

// ---------------------------------------------------------------------------------------------
// serializeParam

test("serializeParam returns null for null and undefined", () => {
  assert.equal(serializeParam(null), null);
  assert.equal(serializeParam(undefined), null);
});

test("serializeParam serializes strings, numbers, bigints and booleans", () => {
  assert.equal(serializeParam(""), "");
  assert.equal(serializeParam('a"b\\c'), 'a"b\\c');
  assert.equal(serializeParam(42), "42");
  assert.equal(serializeParam(-1.5e-7), "-1.5e-7");
  assert.equal(serializeParam(NaN), "NaN");
  assert.equal(serializeParam(Infinity), "Infinity");
  assert.equal(serializeParam(-Infinity), "-Infinity");
  assert.equal(serializeParam(-(2n ** 63n)), "-9223372036854775808");
  assert.equal(serializeParam(true), "t");
  assert.equal(serializeParam(false), "f");
});

test("serializeParam serializes Dates as ISO 8601 in UTC", () => {
  assert.equal(
    serializeParam(new Date(Date.UTC(2024, 1, 29, 8, 15, 0, 123))),
    "2024-02-29T08:15:00.123Z",
  );
});

test("serializeParam writes years before 1 AD as BC and years past 9999 unpadded", () => {
  const date = (iso: string) => new Date(iso);
  assert.equal(serializeParam(date("0000-01-01T00:00:00Z")), "0001-01-01T00:00:00.000Z BC");
  assert.equal(serializeParam(date("-000043-03-15T12:00:00Z")), "0044-03-15T12:00:00.000Z BC");
  assert.equal(serializeParam(date("+010000-01-01T00:00:00Z")), "10000-01-01T00:00:00.000Z");
  assert.equal(serializeParam(date("0001-01-01T00:00:00Z")), "0001-01-01T00:00:00.000Z");
});

test("serializeParam throws RangeError for an invalid Date", () => {
  assert.throws(() => serializeParam(new Date(NaN)), {
    name: "RangeError",
    message: "Invalid Date parameter",
  });
});

test("serializeParam serializes bytes as bytea hex", () => {
  assert.equal(serializeParam(new Uint8Array()), "\\x");
  assert.equal(serializeParam(new Uint8Array([0, 10, 171, 255])), "\\x000aabff");
  assert.equal(serializeParam(new Uint8Array([1, 2]).buffer), "\\x0102");
  const buffer = new Uint8Array([9, 1, 2, 3, 9]).buffer;
  assert.equal(serializeParam(new Uint8Array(buffer, 1, 3)), "\\x010203");
  assert.equal(serializeParam(new DataView(buffer, 1, 2)), "\\x0102");
  assert.equal(serializeParam(new Uint16Array([0x0102])), "\\x0201"); // little-endian memory
});

test("serializeParam serializes all 256 bytes in lowercase hex", () => {
  const text = serializeParam(allBytes)!;
  assert.equal(text, "\\x" + Array.from(allBytes, (b) => b.toString(16).padStart(2, "0")).join(""));
});

test("serializeParam quotes and escapes array elements", () => {
  assert.equal(serializeParam([]), "{}");
  assert.equal(
    serializeParam(["a b", 'with "quote"', "\\", "NULL", "", null, undefined, "ü"]),
    '{"a b","with \\"quote\\"","\\\\","NULL","",NULL,NULL,"ü"}',
  );
  assert.equal(serializeParam([1, 2.5, NaN, 3n, true]), '{"1","2.5","NaN","3","t"}');
});

test("serializeParam serializes nested arrays as nested braces", () => {
  assert.equal(serializeParam([[1, 2], [3, null]]), '{{"1","2"},{"3",NULL}}');
  assert.equal(serializeParam([[[]]]), "{{{}}}");
});

test("serializeParam serializes bytes, Dates and objects inside arrays", () => {
  assert.equal(serializeParam([new Uint8Array([1, 2]), null]), '{"\\\\x0102",NULL}');
  assert.equal(
    serializeParam([new Date(Date.UTC(2020, 0, 1))]),
    '{"2020-01-01T00:00:00.000Z"}',
  );
  assert.equal(serializeParam([{ a: 'x"y' }]), '{"{\\"a\\":\\"x\\\\\\"y\\"}"}');
});

test("serializeParam serializes plain objects as JSON", () => {
  assert.equal(serializeParam({ a: [1, "é"], b: null }), '{"a":[1,"é"],"b":null}');
  assert.equal(serializeParam({}), "{}");
});

test("serializeParam throws TypeError for functions and symbols", () => {
  assert.throws(() => serializeParam(() => 1), { name: "TypeError", message: /function/ });
  assert.throws(() => serializeParam(Symbol("s")), { name: "TypeError", message: /symbol/ });
  assert.throws(() => serializeParam([Symbol("s")]), TypeError);
});

test("serializeParam throws TypeError for a string with a lone surrogate, also in an array", () => {
  // UTF-8 has no form for it: the encoder would send U+FFFD, and the server would store that.
  for (const text of ["\ud800", "a\udc00", "\ud83d\ude00\ud83d", "x\udfffy"]) {
    assert.throws(() => serializeParam(text), { name: "TypeError", message: /lone surrogate/ });
    assert.throws(() => serializeParam(["ok", [text]]), { name: "TypeError" });
  }
  assert.equal(serializeParam("\ud83d\ude00"), "😀"); // a pair is one character
});

test("serializeParam keeps a lone surrogate inside JSON as a \\u escape", () => {
  // JSON.stringify escapes it, so the text is valid UTF-8 and nothing is lost (jsonb refuses
  // it on the server, with its own error; json keeps it).
  assert.equal(serializeParam({ a: "\ud800" }), '{"a":"\\ud800"}');
});

test("serializeParam throws TypeError for Map, Set, Promise and other class instances", () => {
  class Point {
    x = 1;
  }
  const values: [unknown, RegExp][] = [
    [new Map([["a", 1]]), /a Map/],
    [new Set([1]), /a Set/],
    [new WeakMap(), /a WeakMap/],
    [new WeakSet(), /a WeakSet/],
    [Promise.resolve(1), /a Promise .*await/],
    [new Point(), /a Point/],
    [new Error("x"), /an Error/],
    [/re/, /a RegExp/],
    [new String("s"), /a String/],
  ];
  for (const [value, message] of values) {
    assert.throws(() => serializeParam(value), { name: "TypeError", message }, String(value));
    assert.throws(() => serializeParam([value]), { name: "TypeError", message });
  }
});

test("serializeParam throws TypeError for a Map or class instance inside a JSON object", () => {
  assert.throws(() => serializeParam({ tags: new Set(["a"]) }), {
    name: "TypeError",
    message: /a Set \(at key "tags"/,
  });
  assert.throws(() => serializeParam({ a: [{ b: new Map() }] }), { name: "TypeError" });
  assert.throws(() => serializeParam([{ bytes: new Uint8Array(1) }]), { name: "TypeError" });
});

test("serializeParam serializes objects with toJSON and null-prototype objects as JSON", () => {
  class Money {
    constructor(readonly cents: number) {}
    toJSON() {
      return { amount: this.cents / 100 };
    }
  }
  assert.equal(serializeParam(new Money(150)), '{"amount":1.5}');
  assert.equal(
    serializeParam({ m: new Money(5), d: new Date(0) }),
    '{"m":{"amount":0.05},' +
      '"d":"1970-01-01T00:00:00.000Z"}',
  );
  const bare = Object.create(null);
  bare.a = 1;
  assert.equal(serializeParam(bare), '{"a":1}');
  // JSON's own rules inside an object: undefined and functions are left out.
  assert.equal(serializeParam({ a: undefined, f() {}, b: 2 }), '{"b":2}');
});

// ---------------------------------------------------------------------------------------------
// Round trips: what serializeParam writes, the parsers read back (the server prints the same
// literal syntax for text arrays and bytea).

test("serializeParam and textParser(_text) round-trip awkward strings", () => {
  const values = [
    ["a b", 'with "quote"', "\\", '\\\\"', "NULL", "null", "", null, "ü€😀", "{x}", "a,b"],
    [" lead", "trail ", "\t\n", "日本", '"', "'"],
  ];
  const parse = parser(Oid._text);
  assert.deepEqual(parse(serializeParam(values[0])!), values[0]);
  assert.deepEqual(parse(serializeParam(values)!), values);
});

test("serializeParam and textParser(_int4, _int8, _float8) round-trip numbers", () => {
  const ints = [[1, -2], [null, 2147483647]];
  assert.deepEqual(parser(Oid._int4)(serializeParam(ints)!), ints);
  const bigints = [-(2n ** 63n), 0n, null, 2n ** 63n - 1n];
  assert.deepEqual(parser(Oid._int8, true)(serializeParam(bigints)!), bigints);
  const floats = [0.1, -1e308, Infinity, -Infinity];
  assert.deepEqual(parser(Oid._float8)(serializeParam(floats)!), floats);
  assert.ok(Number.isNaN(parser(Oid.float8)(serializeParam(NaN)!)));
});

test("serializeParam and textParser(bytea, _bytea) round-trip all 256 bytes", () => {
  assert.deepEqual(parser(Oid.bytea)(serializeParam(allBytes)!), allBytes);
  const values = [allBytes, null, new Uint8Array(), new Uint8Array([92, 34])];
  assert.deepEqual(parser(Oid._bytea)(serializeParam(values)!), values);
});

test("serializeParam and textParser(_jsonb) round-trip objects", () => {
  // Elements that are objects: a nested JS array would be a nested PostgreSQL array.
  const values = [{ a: 'x"y\\z', b: [1, null] }, null, { "é": "😀" }];
  assert.deepEqual(parser(Oid._jsonb)(serializeParam(values)!), values);
});

test("serializeParam and textParser(timestamptz, _timestamptz) round-trip Dates", () => {
  const dates = [
    new Date("2024-02-29T08:15:00.123Z"),
    new Date("0000-02-29T00:00:00Z"),
    new Date("-004712-01-01T00:00:00Z"),
    new Date("0050-06-01T00:00:00Z"),
    new Date("+010000-01-01T00:00:00Z"),
  ];
  const parse = parser(Oid.timestamptz);
  for (const date of dates) assert.deepEqual(parse(serializeParam(date)!), date);
  assert.deepEqual(parser(Oid._timestamptz)(serializeParam([...dates, null])!), [...dates, null]);
});
