// Reference oracle for tests/unit/test_merkle.py: builds @openzeppelin/merkle-tree's
// StandardMerkleTree from {"values": [...], "leafEncoding": [...]} on stdin and prints
// {"root", "dump", "proofs", "valueProofs"} as JSON on stdout: proofs[i] is getProof(i) and
// valueProofs[i] is getProof(values[i]) (the two differ for duplicated values).
// Given a JSON array of such inputs (a batch, one node start for many trees), prints the
// array of their outputs.
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

function build({ values, leafEncoding }) {
  const tree = StandardMerkleTree.of(values, leafEncoding);
  const proofs = values.map((_, i) => tree.getProof(i));
  const valueProofs = values.map(value => tree.getProof(value));
  return { root: tree.root, dump: tree.dump(), proofs, valueProofs };
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const parsed = JSON.parse(input);
const output = Array.isArray(parsed) ? parsed.map(build) : build(parsed);
process.stdout.write(JSON.stringify(output));
