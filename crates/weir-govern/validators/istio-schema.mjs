// Validates Kubernetes objects against Istio's published CRD schemas, with the ajv validators
// that npm's `@kubernetes-models/istio` generates from Istio's `crd-all.gen.yaml`.
//
//   node istio-schema.mjs [FILE]      FILE: a JSON array of objects (stdin when absent or `-`)
//
// Prints one line per object:
//   ok   <apiVersion> <kind> <namespace>/<name>
//   skip <apiVersion> <kind> <namespace>/<name> (not an Istio kind)
//   FAIL <apiVersion> <kind> <namespace>/<name>: <field path> <what is wrong>[; ...]
// Exit 0 when every Istio object is valid, 1 when any is not (or is of an Istio kind with no
// published schema: refused loudly, never skipped), 2 when the input or the installation is
// broken.
//
// Run by crates/weir-govern/tests/real_validators.rs; installed by `cargo xtask prerequisites`.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "node_modules", "@kubernetes-models", "istio");

function die(message) {
  process.stderr.write(`istio-schema: ${message}\n`);
  process.exit(2);
}

if (!existsSync(join(pkgDir, "package.json"))) {
  die(`${pkgDir} is missing: run \`cargo xtask prerequisites\` (npm ci in ${here})`);
}
const version = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;

const file = process.argv[2];
let text;
try {
  text = readFileSync(file === undefined || file === "-" ? 0 : file, "utf8");
} catch (e) {
  die(`cannot read ${file ?? "stdin"}: ${e.message}`);
}
let objects;
try {
  objects = JSON.parse(text);
} catch (e) {
  die(`input is not JSON: ${e.message}`);
}
if (!Array.isArray(objects)) die("input must be a JSON array of Kubernetes objects");

// apiVersion → the module with one model class per kind, loaded once.
const modules = new Map();
async function modelFor(apiVersion, kind) {
  if (!modules.has(apiVersion)) {
    // Only `<group>/<version>` of an Istio group may name a module path.
    if (!/^[a-z0-9.-]+\.istio\.io\/v[0-9a-z]+$/.test(apiVersion)) {
      modules.set(apiVersion, null);
    } else {
      try {
        modules.set(apiVersion, await import(`@kubernetes-models/istio/${apiVersion}`));
      } catch {
        modules.set(apiVersion, null);
      }
    }
  }
  const mod = modules.get(apiVersion);
  const model = mod && Object.hasOwn(mod, kind) ? mod[kind] : undefined;
  return model && model.apiVersion === apiVersion && model.kind === kind ? model : undefined;
}

function describe(error) {
  const path = error.instancePath || "/";
  let what = error.message ?? error.keyword;
  if (error.params?.allowedValues) what += ` ${JSON.stringify(error.params.allowedValues)}`;
  if (error.params?.additionalProperty) what += ` (${error.params.additionalProperty})`;
  return `${path} ${what}`;
}

process.stdout.write(`# @kubernetes-models/istio ${version}, node ${process.version}\n`);
let failed = 0;
for (const [i, obj] of objects.entries()) {
  const apiVersion = obj?.apiVersion;
  const kind = obj?.kind;
  const meta = obj?.metadata ?? {};
  const id = `${apiVersion} ${kind} ${meta.namespace ?? ""}/${meta.name ?? `(object ${i})`}`;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    process.stdout.write(`FAIL ${id}: / apiVersion and kind must be strings\n`);
    failed++;
    continue;
  }
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  if (!group.endsWith(".istio.io")) {
    process.stdout.write(`skip ${id} (not an Istio kind)\n`);
    continue;
  }
  const Model = await modelFor(apiVersion, kind);
  if (!Model) {
    process.stdout.write(
      `FAIL ${id}: / no published schema for ${kind} in ${apiVersion} (@kubernetes-models/istio ${version})\n`,
    );
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    process.stdout.write(`ok   ${id}\n`);
  } catch (e) {
    const errors = Array.isArray(e.errors) && e.errors.length > 0 ? e.errors.map(describe) : [e.message];
    process.stdout.write(`FAIL ${id}: ${errors.join("; ")}\n`);
    failed++;
  }
}
process.exit(failed === 0 ? 0 : 1);
