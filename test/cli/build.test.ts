// The JavaScript build of the cdil command: bin/cdil.mjs runs it only while it matches the
// sources, and the built command verifies bundles, on worker threads too, and runs the demo.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BUILD_INPUTS_FILE, isBuildCurrent } from '../../bin/build-state.mjs';
import { BundleFile } from '../../src/core/bundle.ts';
import {
  createBundleFixture,
  packBundle,
  unpackBundle,
  withFile,
  type BundleFixture,
} from '../helpers/bundle.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');

describe('isBuildCurrent', () => {
  let root: string;
  const buildDir = () => join(root, 'dist');
  const startedAt = Date.parse('2026-01-01T00:00:00Z');

  /** Writes a build record naming `inputs` and gives every input an mtime before the build. */
  function writeBuild(inputs: unknown, record: unknown = { startedAt, inputs }): void {
    rmSync(root, { recursive: true, force: true });
    mkdirSync(join(root, 'src'), { recursive: true });
    mkdirSync(buildDir());
    for (const input of Array.isArray(inputs) ? inputs : []) {
      writeFileSync(join(root, String(input)), 'export {};\n');
      utimesSync(
        join(root, String(input)),
        new Date(startedAt - 60_000),
        new Date(startedAt - 60_000),
      );
    }
    writeFileSync(join(buildDir(), BUILD_INPUTS_FILE), JSON.stringify(record));
  }

  before(() => {
    mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
    root = mkdtempSync(join(repoRoot, '.tmp', 'build-state-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test('current when every source is older', () => {
    writeBuild(['src/a.ts', 'src/b.ts']);
    assert.equal(isBuildCurrent(root, buildDir()), true);
  });

  test('stale when a source changed after', () => {
    writeBuild(['src/a.ts', 'src/b.ts']);
    utimesSync(join(root, 'src/b.ts'), new Date(startedAt + 1), new Date(startedAt + 1));
    assert.equal(isBuildCurrent(root, buildDir()), false);
  });

  test('stale when a source is gone', () => {
    writeBuild(['src/a.ts', 'src/b.ts']);
    rmSync(join(root, 'src/a.ts'));
    assert.equal(isBuildCurrent(root, buildDir()), false);
  });

  test('stale without a usable record', () => {
    writeBuild(['src/a.ts']);
    rmSync(join(buildDir(), BUILD_INPUTS_FILE));
    assert.equal(isBuildCurrent(root, buildDir()), false);

    writeBuild(['src/a.ts']);
    writeFileSync(join(buildDir(), BUILD_INPUTS_FILE), '{"startedAt": ');
    assert.equal(isBuildCurrent(root, buildDir()), false);

    writeBuild(['src/a.ts'], { inputs: ['src/a.ts'] });
    assert.equal(isBuildCurrent(root, buildDir()), false);

    writeBuild([], { startedAt, inputs: [] });
    assert.equal(isBuildCurrent(root, buildDir()), false);

    writeBuild(['src/a.ts'], { startedAt, inputs: ['src/a.ts', 7] });
    assert.equal(isBuildCurrent(root, buildDir()), false);
  });
});

describe('built cdil command', () => {
  let outdir: string;
  let fixture: BundleFixture;
  let genuine: string;
  let tampered: string;

  function runBuilt(args: string[]): { status: number | null; stdout: string; stderr: string } {
    const result = spawnSync(process.execPath, [join(outdir, 'cli.mjs'), ...args], {
      cwd: fixture.dir,
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  before(async () => {
    // Inside the repository, so the build finds the packages in node_modules as dist/ does.
    mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
    outdir = mkdtempSync(join(repoRoot, '.tmp', 'build-'));
    const build = spawnSync(
      process.execPath,
      [join(repoRoot, 'scripts', 'build.mjs'), '--outdir', outdir],
      { encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(build.status, 0, build.stderr);
    fixture = await createBundleFixture();
    genuine = join(fixture.dir, 'genuine.zip');
    tampered = join(fixture.dir, 'tampered.zip');
    writeFileSync(genuine, fixture.zip);
    const files = unpackBundle(fixture.zip);
    writeFileSync(
      tampered,
      packBundle(withFile(files, BundleFile.readme, new TextEncoder().encode('edited\n'))),
    );
  });
  after(async () => {
    rmSync(outdir, { recursive: true, force: true });
    await fixture.close();
  });

  test('build records its sources', () => {
    assert.equal(isBuildCurrent(repoRoot, outdir), true);
  });

  test('prints help for every command', () => {
    const result = runBuilt(['--help']);
    assert.equal(result.status, 0, result.stderr);
    for (const command of ['serve', 'verify', 'tenant', 'demo', 'ledger']) {
      assert.match(result.stdout, new RegExp(`\\b${command}\\b`));
    }
  });

  test('verifies one bundle', () => {
    const valid = runBuilt(['verify', genuine]);
    assert.equal(valid.status, 0, valid.stderr);
    assert.match(valid.stdout, /VALID/);

    const invalid = runBuilt(['verify', tampered]);
    assert.equal(invalid.status, 1, invalid.stderr);
  });

  test('verifies bundles on worker threads', () => {
    const result = runBuilt(['verify', genuine, tampered, genuine]);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /2 of 3 bundles valid \(\d+ worker threads?\)/);
  });

  test('runs the demo with its shipped notes', () => {
    const result = runBuilt(['demo', '--limit', '3']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /Demo complete/);
  });
});
