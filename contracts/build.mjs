// Compiles contracts/src/*.sol offline with the npm `solc` package and writes one artifact per
// contract to contracts/artifacts/<Name>.json.
//
//   node contracts/build.mjs           write the artifacts
//   node contracts/build.mjs --check   exit 1, naming each contract, when the committed
//                                      artifacts differ from what the sources compile to
//
// Artifacts are deterministic: sorted keys, two-space indent, trailing newline. Each records
// the compiler version and settings and, per contract, the sha256 of every source unit its
// compilation read plus one digest over all of them (see sourcesDigest).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const SOLC_VERSION = "0.8.37";
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
};

const contractsDir = dirname(fileURLToPath(import.meta.url));
const srcDir = join(contractsDir, "src");
const artifactsDir = join(contractsDir, "artifacts");
const nodeModules = join(contractsDir, "..", "node_modules");
const solc = createRequire(import.meta.url)(join(nodeModules, "solc"));

function sha256(text) {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sortKeys(value[key])]),
  );
}

function render(value) {
  return JSON.stringify(sortKeys(value), null, 2) + "\n";
}

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}

function checkCompilerVersion() {
  const version = solc.version();
  if (!version.startsWith(`${SOLC_VERSION}+`)) {
    fail(`solc ${version} found, ${SOLC_VERSION} pinned; run npm ci`);
  }
  return version;
}

function readSources() {
  const files = readdirSync(srcDir).filter((name) => name.endsWith(".sol")).sort();
  return Object.fromEntries(
    files.map((name) => [`src/${name}`, { content: readFileSync(join(srcDir, name), "utf8") }]),
  );
}

// Resolves `@openzeppelin/...` imports from node_modules; nothing else is allowed.
function makeImportCallback(readFiles) {
  return (path) => {
    const full = resolve(nodeModules, path);
    if (!path.startsWith("@openzeppelin/") || !full.startsWith(nodeModules + sep)) {
      return { error: `import outside @openzeppelin: ${path}` };
    }
    if (!existsSync(full)) return { error: `not found: ${path}` };
    const contents = readFileSync(full, "utf8");
    readFiles[path] = contents;
    return { contents };
  };
}

function compile(sources) {
  const outputSelection = {};
  for (const unit of Object.keys(sources)) {
    outputSelection[unit] = { "*": ["abi", "evm.bytecode", "evm.deployedBytecode", "metadata"] };
  }
  const input = { language: "Solidity", sources, settings: { ...SETTINGS, outputSelection } };
  const readFiles = Object.fromEntries(
    Object.entries(sources).map(([unit, { content }]) => [unit, content]),
  );
  const output = JSON.parse(
    solc.compile(JSON.stringify(input), { import: makeImportCallback(readFiles) }),
  );
  const problems = (output.errors ?? []).filter(
    (e) => e.severity === "error" || e.sourceLocation?.file?.startsWith("src/"),
  );
  if (problems.length > 0) fail(problems.map((e) => e.formattedMessage).join("\n"));
  return { output, readFiles };
}

// sha256 over "<unit>\n<sha256 of its content>\n" for every source unit, sorted by name.
function sourcesDigest(hashes) {
  return sha256(
    Object.keys(hashes)
      .sort()
      .map((unit) => `${unit}\n${hashes[unit]}\n`)
      .join(""),
  );
}

function artifactFor(unit, name, compiled, readFiles, version) {
  if (Object.keys(compiled.evm.bytecode.linkReferences).length > 0) {
    fail(`${name} needs linked libraries, which this build does not support`);
  }
  const used = Object.keys(JSON.parse(compiled.metadata).sources);
  const hashes = Object.fromEntries(used.map((u) => [u, sha256(readFiles[u])]));
  return {
    contractName: name,
    sourceName: unit,
    abi: compiled.abi,
    bytecode: `0x${compiled.evm.bytecode.object}`,
    deployedBytecode: `0x${compiled.evm.deployedBytecode.object}`,
    compiler: { name: "solc", version, settings: SETTINGS },
    openzeppelin: JSON.parse(
      readFileSync(join(nodeModules, "@openzeppelin/contracts/package.json"), "utf8"),
    ).version,
    sources: { sha256: sourcesDigest(hashes), files: hashes },
  };
}

// One contract per source file, named after the file; other definitions are not artifacts.
function buildArtifacts() {
  const version = checkCompilerVersion();
  const sources = readSources();
  const { output, readFiles } = compile(sources);
  const artifacts = {};
  for (const unit of Object.keys(sources)) {
    const name = unit.slice("src/".length, -".sol".length);
    const compiled = output.contracts[unit]?.[name];
    if (!compiled) fail(`${unit} must define a contract named ${name}`);
    artifacts[name] = render(artifactFor(unit, name, compiled, readFiles, version));
  }
  return artifacts;
}

function readCommitted() {
  if (!existsSync(artifactsDir)) return {};
  const files = readdirSync(artifactsDir).filter((f) => f.endsWith(".json"));
  return Object.fromEntries(
    files.map((f) => [f.slice(0, -".json".length), readFileSync(join(artifactsDir, f), "utf8")]),
  );
}

function describeDifference(name, fresh, committed) {
  if (committed === undefined) return `${name}: no artifact (run node contracts/build.mjs)`;
  if (fresh === undefined) return `${name}: artifact has no source in contracts/src`;
  let oldSources;
  try {
    oldSources = JSON.parse(committed).sources.files;
  } catch {
    return `${name}: artifact is not valid`;
  }
  const newSources = JSON.parse(fresh).sources.files;
  const units = new Set([...Object.keys(oldSources), ...Object.keys(newSources)]);
  const changed = [...units].filter((u) => oldSources[u] !== newSources[u]).sort();
  if (changed.length > 0) return `${name}: sources changed: ${changed.join(", ")}`;
  return `${name}: artifact differs from the compiler output (settings or compiler changed)`;
}

function check(artifacts) {
  const committed = readCommitted();
  const names = [...new Set([...Object.keys(artifacts), ...Object.keys(committed)])].sort();
  const stale = names.filter((n) => artifacts[n] !== committed[n]);
  for (const name of stale) console.error(describeDifference(name, artifacts[name], committed[name]));
  if (stale.length > 0) {
    console.error(`build: ${stale.length} artifact(s) out of date: ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log(`build: ${names.length} artifacts match their sources`);
}

function write(artifacts) {
  mkdirSync(artifactsDir, { recursive: true });
  for (const [name, text] of Object.entries(artifacts)) {
    writeFileSync(join(artifactsDir, `${name}.json`), text);
  }
  console.log(`build: wrote ${Object.keys(artifacts).sort().join(", ")}`);
}

const artifacts = buildArtifacts();
if (process.argv.includes("--check")) check(artifacts);
else write(artifacts);
