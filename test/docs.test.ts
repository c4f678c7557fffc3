// Ties the docs to the code: error codes, routes with their roles, verification checks and
// configuration variables must match in both directions.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Command } from 'commander';
import { registerCommands } from '../src/cli/commands/index.ts';
import { AUDIT_ACTIONS } from '../src/core/audit-event.ts';
import { AUDIT_EXPORT_CHECKS } from '../src/core/audit-export.ts';
import { maxProofSize } from '../src/core/merkle.ts';
import { CHECK_NAMES } from '../src/core/verify/verify.ts';
import { ROUTES } from '../src/server/route-table.ts';
import { ErrorRegistry } from '../src/services/errors.ts';

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
const api = read('docs/api.md');
const formats = read('docs/formats.md');
const operations = read('docs/operations.md');
const part11 = read('docs/part11.md');
const readme = read('README.md');

function tableRows(markdown: string, firstHeader: string): string[][] {
  const lines = markdown.split('\n');
  const header = new RegExp(`^\\|\\s*${firstHeader}\\s*\\|`);
  const start = lines.findIndex((line) => header.test(line));
  assert.ok(start >= 0, `table starting with "${firstHeader}" not found`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) {
      break;
    }
    rows.push(
      line
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
  }
  return rows;
}

test('every error code is documented with its status, and no other', () => {
  const rows = tableRows(api, 'code');
  const documented = new Map(
    rows.map(([code, status]) => [code!.replace(/`/g, ''), Number(status)]),
  );
  for (const [code, { status }] of Object.entries(ErrorRegistry)) {
    assert.equal(documented.get(code), status, code);
  }
  assert.deepEqual([...documented.keys()].sort(), Object.keys(ErrorRegistry).sort());
});

test('every route is documented with its roles, and no other', () => {
  const rows = tableRows(api, 'route');
  const documented = new Map(rows.map(([route, roles]) => [route!.replace(/`/g, ''), roles!]));
  for (const route of Object.values(ROUTES)) {
    const key = `${route.method} ${route.url.replace(/:(\w+)/g, '{$1}')}`;
    const roles = route.roles === 'public' ? 'public' : route.roles.join(', ');
    assert.equal(documented.get(key), roles, key);
  }
  assert.equal(documented.size, Object.keys(ROUTES).length);
});

test('every verification check is documented, and no other', () => {
  const rows = tableRows(formats, 'check');
  assert.deepEqual(
    rows.map(([check]) => check!.replace(/`/g, '')),
    [...CHECK_NAMES],
  );
});

test('every configuration variable is documented, and no other', () => {
  const source = read('src/config/config.ts');
  const used = new Set([...source.matchAll(/env\.([A-Z_]+)/g)].map((match) => match[1]!));
  const rows = tableRows(operations, 'variable');
  const documented = new Set(
    rows.flatMap(([cell]) => [...cell!.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]!)),
  );
  assert.deepEqual([...documented].sort(), [...used].sort());
});

test('documented maximum proof sizes match maxProofSize', () => {
  const rows = tableRows(formats, 'leaves');
  assert.equal(rows.length, 3);
  for (const [leaves, inclusion, consistency] of rows) {
    const max = maxProofSize(Number(leaves!.replace(/,/g, '')));
    assert.equal(inclusion, `${max.inclusionHashes} hashes, ${max.inclusionBytes} bytes`, leaves);
    assert.equal(
      consistency,
      `${max.consistencyHashes} hashes, ${max.consistencyBytes} bytes`,
      leaves,
    );
  }
});

test('every audit action is documented, and no other', () => {
  const rows = tableRows(api, 'action');
  assert.deepEqual(
    rows.map(([action]) => action!.replace(/`/g, '')).sort(),
    [...AUDIT_ACTIONS].sort(),
  );
});

test('every audit export check is documented in order', () => {
  const rows = tableRows(formats, 'audit check');
  assert.deepEqual(
    rows.map(([check]) => check!.replace(/`/g, '')),
    [...AUDIT_EXPORT_CHECKS],
  );
});

test('every test file the Part 11 map names exists', () => {
  const named = new Set([...part11.matchAll(/`([a-z0-9/-]+\.test\.ts)`/g)].map((m) => m[1]!));
  assert.ok(named.size >= 10, `only ${named.size} test files named`);
  for (const file of named) {
    assert.ok(existsSync(new URL(`./${file}`, import.meta.url)), file);
  }
});

/** Returns every command that runs an action, with its full name and long options. */
function leafCommands(command: Command, prefix: string[] = []): [string, string[]][] {
  const name = [...prefix, command.name()];
  if (command.commands.length > 0) {
    return command.commands.flatMap((sub) => leafCommands(sub, name));
  }
  const options = command.options
    .map((option) => option.long)
    .filter((long): long is string => long !== undefined);
  return [[name.join(' '), options]];
}

test('README command table lists every command option', () => {
  const program = new Command('cdil');
  registerCommands(program);
  const usages = tableRows(readme, 'command').map(([usage]) => usage!.replace(/`/g, ''));
  for (const [name, options] of leafCommands(program)) {
    const usage = usages.find(
      (candidate) => candidate.startsWith(`${name} `) || candidate === name,
    );
    assert.ok(usage !== undefined, `README has no row for ${name}`);
    for (const option of options) {
      assert.ok(usage.includes(option), `README row of ${name} lacks ${option}`);
    }
  }
});
