#!/usr/bin/env node
// Prints the native sources of the named groups from native/sources.json, one
// per line, so that binding.gyp (`<!@(...)`) and scripts read the same list as
// CMakeLists.txt.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const listPath = fileURLToPath(new URL('../native/sources.json', import.meta.url));
const list = JSON.parse(readFileSync(listPath, 'utf8'));
const groups = process.argv.slice(2);
if (groups.length === 0) {
  console.error('usage: native-sources.mjs GROUP...  (groups: ' + Object.keys(list).filter((k) => k !== '//').join(', ') + ')');
  process.exit(2);
}
for (const group of groups) {
  if (!Array.isArray(list[group])) {
    console.error(`native-sources: unknown group "${group}"`);
    process.exit(2);
  }
  for (const source of list[group]) console.log(source);
}
