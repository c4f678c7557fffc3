// Measures the storage engine's chain append alone: Store.appendCertificates called in-process,
// without HTTP, PHI screening or signing, for several batch sizes and numbers of tenants
// appending at once. With --spread above 1, each append is one Store.appendCertificateGroups call
// that spreads its batch over several tenants. Each cell reports certificates/s and the CPU time
// per certificate of this process (driver and store code) and, for a PostgreSQL server on this
// machine, of the server. CPU time varies much less than throughput when other programs share the
// machine.
//
// The rows copy the field lengths of a certificate issued through the service for a real note,
// so the database does the same work per row as under real traffic. Only the certificate id,
// sequence and chain hash change, and the signature is copied, so the rows do not verify.
//
// Run: node --import tsx bench/append.ts [--certificates 20000] [--batch 1,4,16,64]
//        [--tenants 1,8] [--spread 1]
//      bash scripts/with-postgres.sh node --import tsx bench/append.ts ...   (PostgreSQL)
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { readNotesFile } from '../src/cli/notes-file.ts';
import { loadConfig } from '../src/config/config.ts';
import { createServices, type Services } from '../src/services/container.ts';
import { timeOrderedUuid } from '../src/services/time-ordered-id.ts';
import type { AppendItem, AppendResult, CertificateRow, ChainLink } from '../src/storage/store.ts';
import {
  benchEnv,
  benchIssueRequest,
  corpusPath,
  findLocalPostmaster,
  machineLine,
  processTreeCpuSeconds,
} from './issuance.ts';

interface CellResult {
  batch: number;
  tenants: number;
  spread: number;
  certificates: number;
  seconds: number;
  processCpuUs: number;
  databaseCpuUs: number | undefined;
  loadAverage: number;
}

function parseList(text: string, name: string): number[] {
  const values = text.split(',').map(Number);
  if (values.some((value) => !Number.isSafeInteger(value) || value < 1)) {
    throw new Error(`${name} must be a comma-separated list of positive integers, got ${text}`);
  }
  return values;
}

interface StandInItem extends AppendItem {
  tenantId: string;
  certificateId: string;
}

/** Builds rows shaped like `template` whose chain hash commits to the id and predecessor. */
function standInSealer(template: CertificateRow) {
  return (item: StandInItem, link: ChainLink): CertificateRow => ({
    ...template,
    tenant_id: item.tenantId,
    chain_sequence: link.sequence,
    certificate_id: item.certificateId,
    chain_hash: createHash('sha256')
      .update(`${link.previousHash ?? ''}|${item.certificateId}`)
      .digest('hex'),
    previous_hash: link.previousHash,
  });
}

/** Throws unless every result of the append is `created`. */
function checkCreated(tenants: string, results: readonly AppendResult[]): void {
  if (results.some((result) => result.kind !== 'created')) {
    throw new Error(
      `append for ${tenants} returned ${results.map((result) => result.kind).join(', ')}, expected only created`,
    );
  }
}

/**
 * Appends `total` certificates. The tenants are split into sets of `spread` tenants, with one
 * append in flight per set. Each append takes `batch` certificates and deals them out over its
 * set in turn, starting after the tenant the previous append ended with.
 */
async function runCell(
  services: Services,
  template: CertificateRow,
  tenantIds: string[],
  spread: number,
  batch: number,
  total: number,
  postmasterPid: number | undefined,
): Promise<CellResult> {
  const seal = standInSealer(template);
  const tenantSets: string[][] = [];
  for (let start = 0; start < tenantIds.length; start += spread) {
    tenantSets.push(tenantIds.slice(start, start + spread));
  }
  let remaining = total;
  const databaseStart =
    postmasterPid === undefined ? undefined : processTreeCpuSeconds(postmasterPid);
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  await Promise.all(
    tenantSets.map(async (tenantSet) => {
      let next = 0;
      while (remaining > 0) {
        const size = Math.min(batch, remaining);
        remaining -= size;
        const groups = new Map<string, StandInItem[]>();
        for (let i = 0; i < size; i++) {
          const tenantId = tenantSet[next % tenantSet.length]!;
          next++;
          const items = groups.get(tenantId) ?? [];
          items.push({ tenantId, certificateId: timeOrderedUuid(Date.now()) });
          groups.set(tenantId, items);
        }
        if (spread === 1) {
          const tenantId = tenantSet[0]!;
          const items = groups.get(tenantId)!;
          checkCreated(tenantId, await services.store.appendCertificates(tenantId, items, seal));
        } else {
          const appendGroups = [...groups].map(([tenantId, items]) => ({ tenantId, items }));
          const results = await services.store.appendCertificateGroups(appendGroups, seal);
          checkCreated([...groups.keys()].join(', '), results.flat());
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const databaseEnd =
    postmasterPid === undefined ? undefined : processTreeCpuSeconds(postmasterPid);
  return {
    batch,
    tenants: tenantIds.length,
    spread,
    certificates: total,
    seconds,
    processCpuUs: (cpu.user + cpu.system) / total,
    databaseCpuUs:
      databaseStart === undefined || databaseEnd === undefined
        ? undefined
        : ((databaseEnd - databaseStart) * 1e6) / total,
    loadAverage: loadavg()[0]!,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      certificates: { type: 'string', default: '20000' },
      batch: { type: 'string', default: '1,4,16,64' },
      tenants: { type: 'string', default: '1,8' },
      spread: { type: 'string', default: '1' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`Usage: node --import tsx bench/append.ts [options]
  --certificates N   certificates appended per cell (default 20000)
  --batch N,...      certificates per append, one cell per value (default 1,4,16,64)
  --tenants N,...    tenants that receive certificates, one cell per value (default 1,8)
  --spread N,...     tenants per append, one cell per value (default 1). The tenants are split
                     into sets of N, with one append in flight per set, and each append deals its
                     batch out over its set in one appendCertificateGroups call. Each value must
                     divide each --tenants value. With 1, every tenant has its own append in
                     flight and appends with appendCertificates.
The store is PostgreSQL when DATABASE_URL is set and a new SQLite file otherwise.`);
    return;
  }
  const [total] = parseList(values.certificates, '--certificates');
  const batches = parseList(values.batch, '--batch');
  const tenantCounts = parseList(values.tenants, '--tenants');
  const spreads = parseList(values.spread, '--spread');
  for (const tenants of tenantCounts) {
    const invalid = spreads.find((spread) => tenants % spread !== 0);
    if (invalid !== undefined) {
      throw new Error(
        `invalid --spread ${invalid}: each --spread value must divide every --tenants value, and ${tenants} is not a multiple`,
      );
    }
  }

  const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-append-'));
  const config = loadConfig(benchEnv(dataDir));
  const services = await createServices(config, { migrate: true });
  const postmasterPid =
    config.databaseUrl === undefined ? undefined : await findLocalPostmaster(config.databaseUrl);
  console.log(`machine: ${machineLine()}`);
  console.log(`engine: ${services.store.engine}, ${total} certificates per cell`);

  const tenantIds = Array.from(
    { length: Math.max(...tenantCounts) },
    (_, i) => `append-${String(i).padStart(3, '0')}`,
  );
  for (const tenantId of tenantIds) {
    await services.tenants.create(tenantId);
  }
  // One certificate issued for a real note gives the field lengths of every stand-in row.
  const [note] = readNotesFile(corpusPath());
  const issued = await services.issuance.issue(tenantIds[0]!, benchIssueRequest(note!, 0));
  const template = await services.store.getCertificate(
    tenantIds[0]!,
    issued.certificate.certificate_id,
  );

  const cells: CellResult[] = [];
  try {
    for (const tenants of tenantCounts) {
      for (const spread of spreads) {
        for (const batch of batches) {
          const cell = await runCell(
            services,
            template!,
            tenantIds.slice(0, tenants),
            spread,
            batch,
            total!,
            postmasterPid,
          );
          cells.push(cell);
          console.log(
            `tenants ${tenants}, spread ${spread}, batch ${batch}: ` +
              `${(cell.certificates / cell.seconds).toFixed(0)} certificates/s`,
          );
        }
      }
    }
  } finally {
    await services.close();
    rmSync(dataDir, { recursive: true, force: true });
  }

  console.log('');
  console.log(
    '| tenants | tenants/append | batch | certs/s | transactions/s | process CPU µs/cert | PG CPU µs/cert | load |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const cell of cells) {
    const perSecond = cell.certificates / cell.seconds;
    console.log(
      `| ${cell.tenants} | ${cell.spread} | ${cell.batch} | ${perSecond.toFixed(0)} | ${(perSecond / cell.batch).toFixed(0)} | ` +
        `${cell.processCpuUs.toFixed(0)} | ${cell.databaseCpuUs?.toFixed(0) ?? ''} | ${cell.loadAverage.toFixed(1)} |`,
    );
  }
}

await main();
