#!/usr/bin/env node
// Runs every test file under test/ with node:test. Node 20 does not expand globs given to
// --test, so this script lists the files itself. Extra arguments are passed to node --test,
// and CDIL_TEST_FILTER=substring limits the run to matching file paths.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function listTests(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      found.push(...listTests(path));
    } else if (name.endsWith('.test.ts')) {
      found.push(relative(root, path));
    }
  }
  return found;
}

const filter = process.env.CDIL_TEST_FILTER;
const files = listTests(join(root, 'test'))
  .filter((file) => !filter || file.includes(filter))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', ...process.argv.slice(2), ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
