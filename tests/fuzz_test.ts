// The protocol fuzzer of tests/_fuzz.ts, a few thousand fixed cases as part of the suite (what
// a case checks is described there). `deno task fuzz --cases N [--seed S]` runs more. On the
// client before the fixes that came with it, these cases fail by the hundred: the Reader held a
// header's declared 256 MiB for a few bytes, COPY TO STDOUT resolved without its data, and a
// COPY FROM STDIN with queries behind it closed the connection.

import { test } from "node:test";
import assert from "node:assert/strict";
import { fuzz } from "./_fuzz.ts";

const T = { timeout: 120_000 };

test(
  "Connection settles every query with a typed outcome on 3000 fuzzed server streams",
  T,
  async () => {
    const { failures, stats } = await fuzz({ cases: 3000, seed: 1 });
    assert.deepEqual(failures, [], failures.map((f) => `seed ${f.seed}: ${f.reason}`).join("\n"));
    assert.equal(stats.cases, 3000);
    // The cases reach every kind of outcome, so the generator itself has not gone blind.
    assert.ok(stats.resolved > 0 && stats.postgresErrors > 0 && stats.decodeErrors > 0);
    for (const code of ["PROTOCOL_ERROR", "CONNECTION_LOST", "UNSUPPORTED"]) {
      assert.ok((stats.connectionErrors[code] ?? 0) > 0, `no ${code} in ${JSON.stringify(stats)}`);
    }
  },
);
