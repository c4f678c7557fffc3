// `cdil demo`: the whole story on a throwaway database. Starts the API on a free local port,
// provisions a tenant, certifies notes over HTTP, exports defense bundles, verifies them
// offline, then alters a note and a bundle and shows that both are caught.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../../config/config.ts';
import { parseTrustedKeys, verifyBundle } from '../../core/bundle.ts';
import { nodeCrypto } from '../../core/crypto-node.ts';
import { readZipSafely, writeDeterministicZip } from '../../core/zip.ts';
import { readNotesFile } from '../notes-file.ts';
import { packageRoot } from '../package-root.ts';

const DEFAULT_NOTES = join(packageRoot(), 'samples', 'notes.jsonl');
const TENANT = 'demo-hospital';

interface DemoOptions {
  notes: string;
  limit: string;
  keep?: boolean;
}

/** Prints progress in place on a terminal, and every tenth of the way otherwise. */
function progress(done: number, total: number, text: string): void {
  if (process.stdout.isTTY) {
    process.stdout.write(`\r  ${text}`);
    if (done === total) {
      process.stdout.write('\n');
    }
  } else if (done === total || done % Math.max(1, Math.ceil(total / 10)) === 0) {
    process.stdout.write(`  ${text}\n`);
  }
}

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

async function request(
  base: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Response> {
  const response = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    throw new Error(`${method} ${path} answered ${response.status}: ${await response.text()}`);
  }
  return response;
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const { createServices } = await import('../../services/container.ts');
  const { buildServer } = await import('../../server/app.ts');
  const { signToken } = await import('../../server/auth.ts');
  const started = Date.now();
  const limit = Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1) {
    throw new Error('--limit must be a positive integer');
  }
  const notes = readNotesFile(options.notes).slice(0, limit);
  const dataDir = mkdtempSync(join(tmpdir(), 'cdil-demo-'));
  const config = loadConfig({
    CDIL_ENV: 'development',
    CDIL_DATA_DIR: dataDir,
    CDIL_LOG_LEVEL: 'warn',
    CDIL_PORT: '0',
  });
  const services = await createServices(config);
  const app = await buildServer(config, services);
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const auth = { secret: config.jwtSecret };
  try {
    step(`Started CDIL on ${base} with a fresh SQLite database in ${dataDir}`);
    const admin = await signToken(auth, {
      subject: 'demo-admin',
      roles: ['admin'],
      ttlSeconds: 600,
    });
    await request(base, admin, 'POST', '/v1/admin/tenants', { tenant_id: TENANT });
    const jwks = parseTrustedKeys(
      await (await fetch(`${base}/v1/tenants/${TENANT}/jwks.json`)).text(),
    );
    console.log(
      `Provisioned tenant ${TENANT}; its public key set is published at /v1/tenants/${TENANT}/jwks.json`,
    );

    const clinician = await signToken(auth, {
      subject: 'scribe-service',
      roles: ['clinician'],
      tenantId: TENANT,
      ttlSeconds: 600,
    });
    const auditor = await signToken(auth, {
      subject: 'compliance-officer',
      roles: ['auditor'],
      tenantId: TENANT,
      ttlSeconds: 600,
    });

    step(`Certifying ${notes.length} notes from ${options.notes}`);
    const certified: { id: string; text: string; certificateId: string }[] = [];
    for (const [index, note] of notes.entries()) {
      const response = await request(base, clinician, 'POST', '/v1/clinical/documentation', {
        model_name: 'demo-scribe',
        model_version: '2026.11',
        prompt_version: 'soap-v3',
        governance_policy_version: 'policy-2026-10',
        note_text: note.text,
        human_reviewed: true,
        human_reviewer_id: `reviewer-${(index % 3) + 1}`,
        encounter_id: `enc-${note.id}`,
        patient_reference: `patient-${note.id}`,
      });
      const { certificate } = (await response.json()) as {
        certificate: { certificate_id: string; chain_sequence: number };
      };
      certified.push({ id: note.id, text: note.text, certificateId: certificate.certificate_id });
      progress(
        index + 1,
        notes.length,
        `certified ${index + 1}/${notes.length} (chain position ${certificate.chain_sequence})`,
      );
    }

    step('Exporting defense bundles and verifying each one offline against the pinned key set');
    const bundles: Uint8Array[] = [];
    let valid = 0;
    for (const [index, note] of certified.entries()) {
      const zip = new Uint8Array(
        await (
          await request(
            base,
            auditor,
            'GET',
            `/v1/certificates/${note.certificateId}/defense-bundle`,
          )
        ).arrayBuffer(),
      );
      bundles.push(zip);
      const report = verifyBundle(nodeCrypto, zip, { trustedKeys: jwks, noteText: note.text });
      if (report.valid) {
        valid += 1;
      }
      progress(
        index + 1,
        certified.length,
        `verified ${index + 1}/${certified.length}: ${valid} valid`,
      );
    }

    step('Tampering: one character of a certified note is changed');
    const first = certified[0]!;
    const altered = first.text.replace(/\d/, (digit) => String((Number(digit) + 1) % 10));
    const noteReport = verifyBundle(nodeCrypto, bundles[0]!, {
      trustedKeys: jwks,
      noteText: altered === first.text ? first.text + ' ' : altered,
    });
    printOutcome(noteReport);

    step('Tampering: the model version inside a bundle is rewritten');
    const files = readZipSafely(bundles[0]!);
    const certificate = JSON.parse(
      Buffer.from(files.get('certificate.json')!).toString('utf8'),
    ) as Record<string, unknown>;
    certificate.model_version = 'a-different-model';
    files.set('certificate.json', Buffer.from(JSON.stringify(certificate, null, 2) + '\n'));
    const bundleReport = verifyBundle(nodeCrypto, writeDeterministicZip(files), {
      trustedKeys: jwks,
    });
    printOutcome(bundleReport);

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const ok = valid === certified.length && !noteReport.valid && !bundleReport.valid;
    step(
      ok
        ? `Demo complete in ${seconds} s: every genuine bundle verified and both alterations were caught`
        : 'Demo FAILED',
    );
    if (options.keep) {
      writeFileSync(join(dataDir, 'bundle.zip'), bundles[0]!);
      writeFileSync(join(dataDir, 'tenant-jwks.json'), JSON.stringify(jwks, null, 2) + '\n');
      writeFileSync(join(dataDir, 'note.txt'), first.text);
      console.log(
        `Try it by hand: ${cdilCommand()} verify ${join(dataDir, 'bundle.zip')} --trusted-keys ${join(dataDir, 'tenant-jwks.json')} --note ${join(dataDir, 'note.txt')}`,
      );
    } else {
      console.log(
        `Run with --keep to keep a bundle, the key set and a note to verify by hand with ${cdilCommand()} verify.`,
      );
    }
    return ok ? 0 : 1;
  } finally {
    await app.close();
    await services.close();
    if (!options.keep) {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
}

function printOutcome(report: ReturnType<typeof verifyBundle>): void {
  const failed = report.checks
    .filter((check) => check.status === 'fail')
    .map((check) => check.check);
  console.log(
    `  ${report.valid ? 'PASS (alteration NOT caught)' : 'FAIL'}: failed checks: ${failed.join(', ') || 'none'}`,
  );
  console.log(`  ${report.summary}`);
}

/**
 * Returns how the user runs cdil from the current folder: `npx cdil` inside the project folder,
 * where the command is not on PATH unless the package was installed globally, else `cdil`.
 */
function cdilCommand(): string {
  const root = packageRoot();
  const cwd = process.cwd();
  return cwd === root || cwd.startsWith(root + sep) ? 'npx cdil' : 'cdil';
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'Run the whole story on a throwaway database: provision, certify, export, verify, tamper',
    )
    .option(
      '--notes <file>',
      'JSON Lines file of notes with a "text" field (.jsonl or .jsonl.gz)',
      DEFAULT_NOTES,
    )
    .option('--limit <n>', 'certify at most this many notes', '25')
    .option(
      '--keep',
      'keep the temporary data folder, with a bundle, the key set and a note to verify by hand',
    )
    .action(async (options: DemoOptions) => {
      process.exitCode = await runDemo(options);
    });
}
