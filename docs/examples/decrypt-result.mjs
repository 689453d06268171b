#!/usr/bin/env node
// Open a Masa result as an oracle app in JavaScript: verify each chunk's signature, keep the
// chunks of the worker that closed the request, assemble, decrypt (ECIES, eciesjs) and check
// the digest the ledger stored. docs/oracle.md explains every step; the test suite runs this
// file on a result its worker produced (tests/integration/test_results.py).
//
//   PRIVATE_KEY=0x... WORKER=0x... DIGEST=0x... REQUEST_ID=... \
//     node docs/examples/decrypt-result.mjs chunks.jsonl > result.bin
//
// chunks.jsonl: the values of the records with the request id as key on the results topic,
// one per line, as `kcat -C -t masa.results -e -f '%k %s\n' | grep "^$REQUEST_ID "` prints
// them (the key, a space, then the value; a line without the key is taken as a bare value).
// WORKER and DIGEST come from the request's RequestCompleted in the ledger (its producer and
// payload.result_digest).  Needs: npm install eciesjs @noble/curves @noble/hashes

import { readFileSync } from "node:fs";
import { decrypt } from "eciesjs";
import { secp256k1 } from "@noble/curves/secp256k1";
import { keccak_256 } from "@noble/hashes/sha3";

const FIELDS = ["request_id", "result_id", "worker", "chunk", "chunks", "digest", "ciphertext"];
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (text) => Uint8Array.from(Buffer.from(text.replace(/^0x/, ""), "hex"));

function fail(reason, detail) {
  process.stderr.write(`refused: ${reason}: ${detail}\n`);
  process.exit(1);
}

// RFC 8785 canonical JSON of the header: sorted keys, no whitespace. Every value is an ASCII
// string or a small integer, so JSON.stringify of each value is already canonical.
function canonical(header) {
  const keys = Object.keys(header).sort();
  return "{" + keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(header[k])}`).join(",") + "}";
}

// EIP-191 personal_sign over keccak256(canonical JSON of the header without its signature).
function signer(header, signature) {
  const digest = keccak_256(new TextEncoder().encode(canonical(header)));
  const prefix = new TextEncoder().encode("\x19Ethereum Signed Message:\n32");
  const hash = keccak_256(new Uint8Array([...prefix, ...digest]));
  const raw = unhex(signature);
  if (raw.length !== 65) throw new Error("signature is not 65 bytes");
  const v = raw[64] >= 27 ? raw[64] - 27 : raw[64];
  const sig = secp256k1.Signature.fromCompact(raw.slice(0, 64)).addRecoveryBit(v);
  const publicKey = sig.recoverPublicKey(hash).toRawBytes(false); // 04 ‖ X ‖ Y
  return "0x" + hex(keccak_256(publicKey.slice(1)).slice(-20));
}

const [file] = process.argv.slice(2);
const { PRIVATE_KEY, WORKER, DIGEST, REQUEST_ID } = process.env;
if (!file || !PRIVATE_KEY || !WORKER || !DIGEST || !REQUEST_ID) {
  fail("usage", "PRIVATE_KEY=0x.. WORKER=0x.. DIGEST=0x.. REQUEST_ID=.. decrypt-result.mjs FILE");
}
const worker = WORKER.toLowerCase();
const digest = DIGEST.toLowerCase();

const chunks = new Map(); // chunk index -> ciphertext bytes
let total = null;
for (const line of readFileSync(file, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const value = line.startsWith("{") ? line : line.slice(line.indexOf(" ") + 1);
  let record;
  try {
    record = JSON.parse(value);
  } catch {
    continue; // not a chunk: anyone can write to the topic
  }
  const header = Object.fromEntries(FIELDS.map((k) => [k, record[k]]));
  let by;
  try {
    by = signer(header, record.signature);
  } catch {
    continue;
  }
  // only the closing worker's chunks of this request and this digest count
  if (by !== header.worker || header.worker !== worker) continue;
  if (header.request_id !== REQUEST_ID || header.digest !== digest) continue;
  const piece = Uint8Array.from(Buffer.from(header.ciphertext, "base64"));
  const seen = chunks.get(header.chunk);
  if (seen && hex(seen) !== hex(piece)) fail("conflicting_chunks", `chunk ${header.chunk}`);
  chunks.set(header.chunk, piece);
  total = header.chunks;
}
if (total === null) fail("no_result", `no chunk signed by ${worker} for ${REQUEST_ID}`);
const parts = [];
for (let i = 0; i < total; i++) {
  if (!chunks.has(i)) fail("incomplete", `chunk ${i} of ${total} is missing`);
  parts.push(chunks.get(i));
}

let result;
try {
  result = decrypt(unhex(PRIVATE_KEY), Buffer.concat(parts));
} catch (error) {
  fail("undecryptable", error.message);
}
const got = "0x" + hex(keccak_256(result));
if (got !== digest) fail("digest_mismatch", `the result hashes to ${got}, the ledger has ${digest}`);
process.stdout.write(result);
