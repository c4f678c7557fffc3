// Measures the cost of the per-tenant Merkle log.
//
// (a) Fills one tenant's log with --leaves audit-event leaves through the store (SQLite, or
//     PostgreSQL when DATABASE_URL is set), then times inclusion and consistency proof
//     generation at that size, database reads included, and checkpoint signing.
// (b) Builds defense bundles (format v2) of real notes with RFC 3161 tokens from a local
//     `openssl ts` TSA on 127.0.0.1, and times offline verification in-process: the
//     synchronous verifier, and the verifier that also checks the tokens against the TSA root,
//     on one thread and on a pool of --threads worker threads (BundleVerifierPool, as
//     `cdil verify A.zip B.zip ...` uses).
// (c) Prints the largest proof sizes at 1K, 1M and 1B leaves (computed, not measured).
//
// Run: node --import tsx bench/log.ts [--leaves 1000000] [--bundles 200] [--seconds 5]
//        [--samples 2000] [--threads N]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { readNotesFile } from '../src/cli/notes-file.ts';
import { loadConfig } from '../src/config/config.ts';
import { verifyBundle, verifyBundleWithTimestamps } from '../src/core/bundle.ts';
import { nodeCrypto } from '../src/core/crypto-node.ts';
import { maxProofSize } from '../src/core/merkle.ts';
import { createServices } from '../src/services/container.ts';
import { BundleVerifierPool, defaultThreadCount } from '../src/services/verify-pool.ts';
import type { NewAuditEvent } from '../src/storage/store.ts';
import { startLocalTsa } from '../test/helpers/tsa.ts';
import { benchEnv, benchIssueRequest, corpusPath, machineLine, percentile } from './issuance.ts';

const { values } = parseArgs({
  options: {
    leaves: { type: 'string', default: '1000000' },
    bundles: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '5' },
    samples: { type: 'string', default: '2000' },
    threads: { type: 'string', default: String(defaultThreadCount()) },
  },
});
const LEAVES = Number(values.leaves);
const BUNDLES = Number(values.bundles);
const SECONDS = Number(values.seconds);
const SAMPLES = Number(values.samples);
const THREADS = Number(values.threads);
const APPEND_BATCH = 5_000;

function fakeEvent(index: number): NewAuditEvent {
  const event = {
    format: 'cdil.audit-event.v1',
    event_id: `bench-${index}`,
    occurred_at: new Date(1_700_000_000_000 + index).toISOString(),
    action: 'certificate.verify',
    outcome: 'success',
  };
  return {
    event_id: event.event_id,
    occurred_at: event.occurred_at,
    action: event.action,
    outcome: event.outcome,
    actor_hash: null,
    object_type: null,
    object_id: null,
    event_json: JSON.stringify(event),
  };
}

function micros(samples: number[]): string {
  return `p50 ${percentile(samples, 0.5).toFixed(0)} µs, p99 ${percentile(samples, 0.99).toFixed(0)} µs`;
}

async function proofCost(dataDir: string): Promise<void> {
  const services = await createServices(
    loadConfig({ ...benchEnv(dataDir), CDIL_CHECKPOINT_INTERVAL_MS: '0' }),
  );
  try {
    const tenant = 'bench-log';
    await services.tenants.create(tenant);
    const fillStarted = performance.now();
    for (let start = 0; start < LEAVES; start += APPEND_BATCH) {
      const count = Math.min(APPEND_BATCH, LEAVES - start);
      await services.store.appendAuditEvents(
        tenant,
        Array.from({ length: count }, (_, offset) => fakeEvent(start + offset)),
      );
      if ((start / APPEND_BATCH) % 40 === 0) {
        process.stderr.write(`  filled ${start + count} of ${LEAVES} leaves\n`);
      }
    }
    const fillSeconds = (performance.now() - fillStarted) / 1000;
    console.log(
      `(a) ${services.store.engine}: appended ${LEAVES} leaves in ${fillSeconds.toFixed(1)} s (${Math.round(LEAVES / fillSeconds)} leaves/s, batches of ${APPEND_BATCH})`,
    );

    let started = performance.now();
    const checkpoint = await services.log.publish(tenant);
    console.log(
      `    checkpoint signing at ${checkpoint.tree_size} leaves: ${((performance.now() - started) * 1000).toFixed(0)} µs`,
    );

    const inclusion: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const index = Math.floor(Math.random() * LEAVES);
      started = performance.now();
      const proof = await services.log.inclusionProof(tenant, index, checkpoint.tree_size);
      inclusion.push((performance.now() - started) * 1000);
      if (proof.proof.length === 0 && LEAVES > 1) {
        throw new Error('empty inclusion proof');
      }
    }
    console.log(
      `    inclusion proof at ${LEAVES} leaves (DB reads included, ${SAMPLES} random leaves): ${micros(inclusion)}`,
    );

    const consistency: number[] = [];
    for (let i = 0; i < Math.min(SAMPLES, 500); i++) {
      const from = 1 + Math.floor(Math.random() * (LEAVES - 1));
      started = performance.now();
      await services.log.consistencyProof(tenant, from, LEAVES);
      consistency.push((performance.now() - started) * 1000);
    }
    console.log(`    consistency proof to ${LEAVES} leaves: ${micros(consistency)}`);
  } finally {
    await services.close();
  }
}

async function verificationCost(dataDir: string): Promise<void> {
  const tsa = await startLocalTsa();
  try {
    const config = loadConfig({
      ...benchEnv(dataDir),
      CDIL_CHECKPOINT_INTERVAL_MS: '0',
      TSA_URL: tsa.url,
      TSA_TRUSTED_ROOTS: tsa.rootPemPath,
    });
    const services = await createServices(config);
    // Checkpoint token only (the default), and with a token per certificate as well.
    const plain: Uint8Array[] = [];
    const stamped: Uint8Array[] = [];
    try {
      const notes = readNotesFile(corpusPath()).slice(0, BUNDLES);
      for (const [tenant, zips, perCertificate] of [
        ['bench-bundles', plain, false],
        ['bench-stamped', stamped, true],
      ] as const) {
        await services.tenants.create(tenant, {
          timestampPolicy: 'required',
          timestampCertificates: perCertificate,
        });
        for (const [index, note] of notes.entries()) {
          await services.issuance.issue(tenant, benchIssueRequest(note, index));
        }
        const page = await services.certificates.query(tenant, {}, { limit: BUNDLES });
        for (const certificate of page.items) {
          zips.push(
            (await services.certificates.defenseBundle(tenant, certificate.certificate_id)).zip,
          );
        }
      }
    } finally {
      await services.close();
    }

    const time = async (
      label: string,
      zips: Uint8Array[],
      verify: (zip: Uint8Array) => Promise<boolean> | boolean,
    ) => {
      let count = 0;
      let invalid = 0;
      const started = performance.now();
      const deadline = started + SECONDS * 1000;
      while (performance.now() < deadline) {
        for (const zip of zips) {
          if (!(await verify(zip))) {
            invalid += 1;
          }
          count += 1;
        }
      }
      const elapsed = (performance.now() - started) / 1000;
      console.log(
        `    ${label}: ${Math.round(count / elapsed)} bundles/s (${((elapsed / count) * 1e6).toFixed(0)} µs each, ${invalid} invalid)`,
      );
    };
    console.log(
      `(b) ${plain.length} v2 bundles of real notes per set, each with an inclusion proof and a checkpoint token; one thread:`,
    );
    const withTokens = async (zip: Uint8Array) =>
      (await verifyBundleWithTimestamps(nodeCrypto, zip, { tsaRoots: tsa.rootPem })).valid;
    await time(
      'verifyBundle (log proof, tokens not checked)',
      plain,
      (zip) => verifyBundle(nodeCrypto, zip).valid,
    );
    await time('with the shared checkpoint token checked', plain, withTokens);
    await time('with a checkpoint and a per-certificate token checked', stamped, withTokens);

    console.log(`    the same on a pool of ${THREADS} worker threads:`);
    const pool = new BundleVerifierPool(THREADS);
    try {
      const timePool = async (label: string, zips: Uint8Array[], tsaRoots?: string) => {
        // The first pass fills each worker's token cache, as the one-thread runs above did.
        await pool.verifyMany(zips, { tsaRoots });
        let count = 0;
        let invalid = 0;
        const started = performance.now();
        while (performance.now() - started < SECONDS * 1000) {
          const outcomes = await pool.verifyMany(zips, { tsaRoots });
          invalid += outcomes.filter((outcome) => outcome.report?.valid !== true).length;
          count += zips.length;
        }
        const elapsed = (performance.now() - started) / 1000;
        console.log(`    ${label}: ${Math.round(count / elapsed)} bundles/s (${invalid} invalid)`);
      };
      await timePool('pool, tokens not checked', plain);
      await timePool('pool, shared checkpoint token checked', plain, tsa.rootPem);
      await timePool('pool, checkpoint and per-certificate token checked', stamped, tsa.rootPem);
    } finally {
      await pool.close();
    }
  } finally {
    await tsa.close();
  }
}

function proofSizes(): void {
  console.log('(c) largest proofs, computed:');
  for (const leaves of [1_000, 1_000_000, 1_000_000_000]) {
    const size = maxProofSize(leaves);
    console.log(
      `    ${leaves.toLocaleString('en-US')} leaves: inclusion ${size.inclusionHashes} hashes (${size.inclusionBytes} bytes), consistency ${size.consistencyHashes} hashes (${size.consistencyBytes} bytes)`,
    );
  }
}

console.log(`machine: ${machineLine()}`);
const dir = mkdtempSync(join(tmpdir(), 'cdil-bench-log-'));
try {
  await proofCost(join(dir, 'proofs'));
  await verificationCost(join(dir, 'bundles'));
  proofSizes();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
