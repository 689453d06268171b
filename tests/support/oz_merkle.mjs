// Reference oracle for tests/unit/test_merkle.py: builds @openzeppelin/merkle-tree's
// StandardMerkleTree from {"values": [...], "leafEncoding": [...]} on stdin and prints
// {"root", "dump", "proofs", "valueProofs"} as JSON on stdout: proofs[i] is getProof(i) and
// valueProofs[i] is getProof(values[i]) (the two differ for duplicated values).
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { values, leafEncoding } = JSON.parse(input);
const tree = StandardMerkleTree.of(values, leafEncoding);
const proofs = values.map((_, i) => tree.getProof(i));
const valueProofs = values.map(value => tree.getProof(value));
process.stdout.write(JSON.stringify({ root: tree.root, dump: tree.dump(), proofs, valueProofs }));
