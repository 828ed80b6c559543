// Khronos glTF-Validator (npm gltf-validator) on one .glb: prints its report's counts and messages as JSON.
const fs = require("fs");
const path = require("path");
const validator = require(path.resolve(process.argv[2], "gltf-validator"));
const data = new Uint8Array(fs.readFileSync(process.argv[3]));
validator.validateBytes(data, { maxIssues: 200 }).then((report) => {
  const i = report.issues;
  console.log(JSON.stringify({ errors: i.numErrors, warnings: i.numWarnings, infos: i.numInfos, hints: i.numHints,
                               messages: i.messages.map((m) => `${m.code} ${m.pointer || ""}: ${m.message}`) }));
}, (err) => { console.error(String(err)); process.exit(3); });
