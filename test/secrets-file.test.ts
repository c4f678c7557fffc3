// Validation of the development secrets file: each broken file is a configuration error that
// names the file and the field, in loadConfig and at the command line.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config/config.ts';
import { runCli } from './helpers/cli.ts';

const JWT_SECRET = Buffer.alloc(32, 7).toString('base64url');
const KEK = Buffer.alloc(32, 9).toString('base64url');

const BROKEN_FILES: { name: string; text: string; problem: RegExp }[] = [
  {
    name: 'missing kek',
    text: JSON.stringify({ jwt_secret: JWT_SECRET }),
    problem: /secrets\.json: field "kek" is missing/,
  },
  {
    name: 'missing jwt_secret',
    text: JSON.stringify({ kek: KEK }),
    problem: /secrets\.json: field "jwt_secret" is missing/,
  },
  {
    name: 'truncated JSON',
    text: '{"jwt_secret":',
    problem: /secrets\.json is not valid JSON/,
  },
  {
    name: 'array instead of object',
    text: '[]',
    problem: /secrets\.json must contain a JSON object/,
  },
  {
    name: 'number as kek',
    text: JSON.stringify({ jwt_secret: JWT_SECRET, kek: 12 }),
    problem: /secrets\.json: field "kek" must be a string/,
  },
  {
    name: 'short kek',
    text: JSON.stringify({ jwt_secret: JWT_SECRET, kek: 'abcd' }),
    problem: /secrets\.json: field "kek" must be base64 or hex of exactly 32 bytes/,
  },
  {
    name: 'short jwt_secret',
    text: JSON.stringify({ jwt_secret: 'abcd', kek: KEK }),
    problem: /secrets\.json: field "jwt_secret" must be base64 or hex of at least 32 bytes/,
  },
];

describe('development secrets file validation', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cdil-secrets-file-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [index, broken] of BROKEN_FILES.entries()) {
    test(`loadConfig rejects ${broken.name}`, () => {
      const dataDir = join(dir, `config-${index}`);
      rmSync(dataDir, { recursive: true, force: true });
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(join(dataDir, 'secrets.json'), broken.text);
      let caught: unknown;
      try {
        loadConfig({ CDIL_ENV: 'development', CDIL_DATA_DIR: dataDir });
      } catch (error) {
        caught = error;
      }
      assert.ok(caught instanceof ConfigError, String(caught));
      const problems = caught.problems.join('\n');
      assert.match(problems, broken.problem);
      assert.ok(problems.includes(join(dataDir, 'secrets.json')), problems);
      assert.doesNotMatch(problems, /CDIL_KEK|CDIL_JWT_SECRET must/);
    });
  }

  for (const [index, broken] of BROKEN_FILES.slice(0, 3).entries()) {
    test(`tenant create exits 78 on ${broken.name}`, () => {
      const dataDir = join(dir, `cli-${index}`);
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(join(dataDir, 'secrets.json'), broken.text);
      const result = runCli(['tenant', 'create', 'any-tenant'], {
        CDIL_ENV: 'development',
        CDIL_DATA_DIR: dataDir,
        CDIL_SQLITE_PATH: join(dataDir, 'cdil.sqlite'),
        DATABASE_URL: '',
        CDIL_JWT_SECRET: '',
        CDIL_KEK: '',
      });
      assert.equal(result.status, 78, result.stderr);
      assert.match(result.stderr, broken.problem);
      assert.doesNotMatch(result.stderr, /TypeError|Cannot read properties/);
    });
  }
});

describe('generated secrets reused in one process', () => {
  test('a second start keeps the secrets file', async () => {
    const { createServices } = await import('../src/services/container.ts');
    const dir = mkdtempSync(join(tmpdir(), 'cdil-secrets-reuse-'));
    try {
      const config = loadConfig({
        CDIL_ENV: 'development',
        CDIL_DATA_DIR: dir,
        CDIL_LOG_LEVEL: 'silent',
        DATABASE_URL: '',
      });
      assert.equal(config.secretsGenerated, true);
      const first = await createServices(config);
      await first.tenants.create('reuse');
      await first.close();
      const second = await createServices(config);
      try {
        assert.ok(existsSync(config.secretsFile!), 'the secrets file was removed');
        assert.equal((await second.tenants.jwks('reuse')).keys.length, 1);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('key-encryption key check at start-up', () => {
  test('a wrong key is refused', async () => {
    const { createServices } = await import('../src/services/container.ts');
    const dir = mkdtempSync(join(tmpdir(), 'cdil-wrong-kek-'));
    const env = {
      CDIL_ENV: 'development',
      CDIL_DATA_DIR: dir,
      CDIL_LOG_LEVEL: 'silent',
      DATABASE_URL: '',
      CDIL_JWT_SECRET: Buffer.alloc(32, 1).toString('base64'),
    };
    try {
      const first = await createServices(
        loadConfig({ ...env, CDIL_KEK: Buffer.alloc(32, 2).toString('base64') }),
      );
      await first.tenants.create('sealed');
      await first.close();
      await assert.rejects(
        createServices(loadConfig({ ...env, CDIL_KEK: Buffer.alloc(32, 3).toString('base64') })),
        (error: unknown) =>
          error instanceof ConfigError &&
          /does not open the sealed secrets of tenant sealed/.test(error.message),
      );
      const again = await createServices(
        loadConfig({ ...env, CDIL_KEK: Buffer.alloc(32, 2).toString('base64') }),
      );
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
