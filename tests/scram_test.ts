import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { ScramClient } from "../src/scram.ts";
import { ConnectionError } from "../src/errors.ts";

// RFC 7677, section 3.
const CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST = `r=${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`;
const CLIENT_FINAL = `c=biws,r=${SERVER_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`;
// The RFC prints v=6rriTRBi23WpRR/wt1+mBkhzzbIjZx6UmBnJQstIAsQ=, a known erratum: that value does
// not follow from its own inputs. This is the ServerSignature they give (checked with Python's
// hashlib and by other SCRAM implementations).
const SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
const RFC_MISPRINTED_SERVER_FINAL = "v=6rriTRBi23WpRR/wt1+mBkhzzbIjZx6UmBnJQstIAsQ=";

function isAuthFailed(pattern: RegExp): (error: unknown) => boolean {
  return (error) =>
    error instanceof ConnectionError && error.code === "AUTH_FAILED" && pattern.test(error.message);
}

/** The exchange computed independently with node:crypto, for the empty user name. */
function expectedExchange(password: string, nonce: string, serverFirst: string) {
  const attrs = Object.fromEntries(serverFirst.split(",").map((a) => [a[0], a.slice(2)]));
  const salted = pbkdf2Sync(
    password,
    Buffer.from(attrs.s, "base64"),
    Number(attrs.i),
    32,
    "sha256",
  );
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const withoutProof = `c=biws,r=${attrs.r}`;
  const authMessage = `n=,r=${nonce},${serverFirst},${withoutProof}`;
  const signature = createHmac("sha256", storedKey).update(authMessage).digest();
  const proof = clientKey.map((byte, i) => byte ^ signature[i]);
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  const serverSignature = createHmac("sha256", serverKey).update(authMessage).digest("base64");
  return {
    clientFinal: `${withoutProof},p=${Buffer.from(proof).toString("base64")}`,
    serverFinal: `v=${serverSignature}`,
  };
}

test("ScramClient reproduces the RFC 7677 exchange, when given its user, password and nonce", async () => {
  const scram = new ScramClient("pencil", CLIENT_NONCE, "user");
  assert.equal(scram.mechanism, "SCRAM-SHA-256");
  assert.equal(scram.clientFirstMessage(), `n,,n=user,r=${CLIENT_NONCE}`);
  assert.equal(await scram.clientFinalMessage(SERVER_FIRST), CLIENT_FINAL);
  scram.verifyServerFinal(SERVER_FINAL);
});

test("ScramClient sends an empty user name and matches node:crypto, when no user is given", async () => {
  const scram = new ScramClient("pencil", CLIENT_NONCE);
  assert.equal(scram.clientFirstMessage(), `n,,n=,r=${CLIENT_NONCE}`);
  const expected = expectedExchange("pencil", CLIENT_NONCE, SERVER_FIRST);
  assert.equal(await scram.clientFinalMessage(SERVER_FIRST), expected.clientFinal);
  scram.verifyServerFinal(expected.serverFinal);
  // A server-final with extensions after v= is accepted too.
  scram.verifyServerFinal(`${expected.serverFinal},x=ext`);
});

test("ScramClient makes a random 24-character base64 nonce, when none is given", () => {
  const a = new ScramClient("pw").clientFirstMessage();
  const b = new ScramClient("pw").clientFirstMessage();
  assert.match(a, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
  assert.notEqual(a, b);
});

test("ScramClient.verifyServerFinal throws AUTH_FAILED, when the server signature is tampered with", async () => {
  const scram = new ScramClient("pencil", CLIENT_NONCE, "user");
  await scram.clientFinalMessage(SERVER_FIRST);
  const tampered = SERVER_FINAL.replace("v=6rri", "v=7rri");
  assert.throws(() => scram.verifyServerFinal(tampered), isAuthFailed(/signature does not match/));
  assert.throws(() => scram.verifyServerFinal(RFC_MISPRINTED_SERVER_FINAL), isAuthFailed(/match/));
  assert.throws(() => scram.verifyServerFinal("v=AAAA"), isAuthFailed(/does not match/));
  assert.throws(() => scram.verifyServerFinal("v=not base64!"), isAuthFailed(/does not match/));
  assert.throws(() => scram.verifyServerFinal("x=1"), isAuthFailed(/malformed/));
});

test("ScramClient.verifyServerFinal throws AUTH_FAILED with the server's text, when given e=", async () => {
  const scram = new ScramClient("pencil", CLIENT_NONCE, "user");
  await scram.clientFinalMessage(SERVER_FIRST);
  assert.throws(() => scram.verifyServerFinal("e=invalid-proof"), isAuthFailed(/invalid-proof/));
});

test("ScramClient.verifyServerFinal throws AUTH_FAILED, when called before clientFinalMessage", () => {
  const scram = new ScramClient("pencil", CLIENT_NONCE);
  assert.throws(() => scram.verifyServerFinal(SERVER_FINAL), isAuthFailed(/too early/));
});

test("ScramClient.clientFinalMessage rejects with AUTH_FAILED, when the server nonce does not extend the client's", async () => {
  const bad = [
    SERVER_FIRST.replace("r=rOpr", "r=XOpr"),
    `r=${CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`,
    `r=rOprNGfwEbeRWgbNEkq,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`,
  ];
  for (const serverFirst of bad) {
    await assert.rejects(
      new ScramClient("pencil", CLIENT_NONCE).clientFinalMessage(serverFirst),
      isAuthFailed(/nonce/),
    );
  }
});

test("ScramClient.clientFinalMessage rejects with AUTH_FAILED, when the salt, count or layout is invalid", async () => {
  const cases: [string, RegExp][] = [
    [`r=${SERVER_NONCE},s=not*base64,i=4096`, /salt/],
    [`r=${SERVER_NONCE},s=,i=4096`, /salt/],
    [`r=${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`, /iteration/],
    [`r=${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=10000001`, /iteration/],
    [`r=${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1`, /iteration/],
    [`r=${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=abc`, /iteration/],
    [`r=${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==`, /malformed/],
    [`s=W22ZaJ0SNY7soEsUEjb6gQ==,r=${SERVER_NONCE},i=4096`, /malformed/],
    [`m=ext,r=${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /extension/],
    ["", /malformed/],
  ];
  for (const [serverFirst, message] of cases) {
    await assert.rejects(
      new ScramClient("pencil", CLIENT_NONCE).clientFinalMessage(serverFirst),
      isAuthFailed(message),
      serverFirst,
    );
  }
});

test("ScramClient normalizes the password with NFKC, when it is not ASCII", async () => {
  const serverFirst = SERVER_FIRST;
  const composed = await new ScramClient("caf\u00e9\u2168", CLIENT_NONCE).clientFinalMessage(
    serverFirst,
  );
  const decomposed = await new ScramClient("cafe\u0301IX", CLIENT_NONCE).clientFinalMessage(
    serverFirst,
  );
  assert.equal(composed, decomposed);
  assert.equal(composed, expectedExchange("caf\u00e9IX", CLIENT_NONCE, serverFirst).clientFinal);
});

test("ScramClient throws TypeError, when the password or nonce is not valid", () => {
  assert.throws(() => new ScramClient(undefined as unknown as string), TypeError);
  assert.throws(() => new ScramClient("pw", "has,comma"), TypeError);
  assert.throws(() => new ScramClient("pw", ""), TypeError);
  assert.throws(() => new ScramClient("pw", "sp ace"), TypeError);
});

test("ScramClient does not show the password, when inspected or stringified", async () => {
  const scram = new ScramClient("Sup3rS3cretPW", CLIENT_NONCE);
  assert.ok(!JSON.stringify(scram).includes("Sup3rS3cretPW"));
  const { inspect } = await import("node:util");
  assert.ok(!inspect(scram, { showHidden: true }).includes("Sup3rS3cretPW"));
});
