// A defense bundle's bytes depend only on the certificate: exporting twice, exporting after the
// chain has grown, and zipping the same files in a process with another time zone all give the
// same ZIP.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { readZipSafely, writeDeterministicZip } from '../../src/core/zip.ts';
import {
  createBundleFixture,
  issueRequest,
  TENANT_ID,
  type BundleFixture,
} from '../helpers/bundle.ts';

const ZIP_MODULE = pathToFileURL(
  join(import.meta.dirname, '..', '..', 'src', 'core', 'zip.ts'),
).href;

let fixture: BundleFixture;
let root: string;
let filesDir: string;

before(async () => {
  fixture = await createBundleFixture();
  root = mkdtempSync(join(tmpdir(), 'cdil-determinism-'));
  filesDir = join(root, 'files');
  mkdirSync(filesDir);
  for (const [name, content] of readZipSafely(fixture.zip)) {
    writeFileSync(join(filesDir, name), content);
  }
});

after(async () => {
  rmSync(root, { recursive: true, force: true });
  await fixture.close();
});

/**
 * Zips the unpacked bundle files in a child process with the given TZ. Returns the ZIP bytes
 * and the child's getTimezoneOffset() of 1980-01-01 local time, in minutes west of UTC.
 */
function zipInChild(timeZone: string): { zip: Buffer; offsetMinutes: number } {
  const output = join(root, `bundle-${timeZone.replace(/\W/g, '-')}.zip`);
  const script = `
    import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
    import { join } from 'node:path';
    import { writeDeterministicZip } from ${JSON.stringify(ZIP_MODULE)};
    const dir = ${JSON.stringify(filesDir)};
    const files = new Map(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name))]));
    writeFileSync(${JSON.stringify(output)}, writeDeterministicZip(files));
    process.stdout.write(String(new Date(1980, 0, 1).getTimezoneOffset()));
  `;
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', script],
    { env: { ...process.env, TZ: timeZone }, encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(result.status, 0, `child with TZ=${timeZone} failed: ${result.stderr}`);
  return { zip: readFileSync(output), offsetMinutes: Number(result.stdout) };
}

/** Returns the DOS time and date fields of every local file header. */
function localHeaderTimes(zip: Uint8Array): { time: number; date: number }[] {
  const view = Buffer.from(zip);
  const times: { time: number; date: number }[] = [];
  for (let offset = 0; offset + 30 <= view.length;) {
    if (view.readUInt32LE(offset) !== 0x04034b50) {
      break;
    }
    times.push({ time: view.readUInt16LE(offset + 10), date: view.readUInt16LE(offset + 12) });
    const nameLength = view.readUInt16LE(offset + 26);
    const extraLength = view.readUInt16LE(offset + 28);
    offset += 30 + nameLength + extraLength + view.readUInt32LE(offset + 18);
  }
  return times;
}

void describe('defense bundle bytes', () => {
  test('same certificate exported twice is identical', async () => {
    const again = await fixture.services.certificates.defenseBundle(
      TENANT_ID,
      fixture.certificate.certificate_id,
    );
    assert.deepEqual(Buffer.from(again.zip), Buffer.from(fixture.zip));
  });

  test('export after the chain grows is identical', async () => {
    await fixture.services.issuance.issue(TENANT_ID, issueRequest({ encounter_id: 'enc-later' }));
    const later = await fixture.services.certificates.defenseBundle(
      TENANT_ID,
      fixture.certificate.certificate_id,
    );
    assert.deepEqual(Buffer.from(later.zip), Buffer.from(fixture.zip));
  });

  test('rezipping the unpacked files is identical', () => {
    assert.deepEqual(
      Buffer.from(writeDeterministicZip(readZipSafely(fixture.zip))),
      Buffer.from(fixture.zip),
    );
  });

  test('every entry is dated 1980-01-01 00:00', () => {
    const times = localHeaderTimes(fixture.zip);
    assert.equal(times.length, readZipSafely(fixture.zip).size);
    for (const { time, date } of times) {
      assert.equal(time, 0);
      // DOS date: (year - 1980) << 9 | month << 5 | day.
      assert.equal(date, (1 << 5) | 1);
    }
  });
});

void describe('defense bundle bytes in other time zones', () => {
  // getTimezoneOffset() of 1980-01-01 local time in each zone, in minutes west of UTC.
  const zones: [string, number][] = [
    ['Asia/Kolkata', -330],
    ['America/St_Johns', 210],
    ['Pacific/Chatham', -825],
    ['UTC', 0],
  ];
  for (const [timeZone, offsetMinutes] of zones) {
    test(`TZ=${timeZone} gives identical bytes`, () => {
      const child = zipInChild(timeZone);
      assert.equal(child.offsetMinutes, offsetMinutes, 'the child ran in the requested time zone');
      assert.deepEqual(child.zip, Buffer.from(fixture.zip));
    });
  }
});
