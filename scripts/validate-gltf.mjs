// Validate .glb files with Khronos' glTF-Validator (npm gltf-validator) and print one JSON report.
// Usage: node scripts/validate-gltf.mjs FILE.glb [...]
// Prints [{"file", "numErrors", "numWarnings", "numInfos", "messages": [first 20]}, ...];
// exits 1 when any file has errors, 2 on bad usage.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import * as validator from "gltf-validator";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node scripts/validate-gltf.mjs FILE.glb [...]");
  process.exit(2);
}
const reports = [];
for (const file of files) {
  const bytes = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(bytes, { uri: basename(file), maxIssues: 100 });
  reports.push({
    file,
    validatorVersion: report.validatorVersion,
    numErrors: report.issues.numErrors,
    numWarnings: report.issues.numWarnings,
    numInfos: report.issues.numInfos,
    messages: report.issues.messages.slice(0, 20),
  });
}
console.log(JSON.stringify(reports));
process.exit(reports.some((r) => r.numErrors > 0) ? 1 : 0);
