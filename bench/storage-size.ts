// Measures how storage grows with the number of certificates, and whether lookups stay flat as
// it grows. The database is PostgreSQL when DATABASE_URL is set and a new SQLite file otherwise,
// and it must be empty.
//
// 1. Provisions --tenants tenants and issues --real certificates through IssuanceService from
//    the MTSamples notes, each with an Idempotency-Key, exactly as the HTTP API would.
// 2. Fills the database to --count certificates through Store.appendCertificates in batches of
//    --batch, one tenant per batch. Each filled certificate copies the note and identifier
//    hashes of a real one and gets a new id, nonce and timestamps. It is then sealed by the
//    service's own sealCertificate, so its chain hash and signature are real and every row has
//    the size of an issued one. A share of --idempotency-share of them also stores a keyed
//    idempotency key, as requests with an Idempotency-Key header do.
// 3. Times --probes calls of each lookup the API makes: by sequence, by id, a page after a
//    cursor and a page in an issued_at range. It also times one-certificate appends, which lock
//    and update the chain head. These probes run before the fill and after each of
//    --checkpoints equal parts of it.
// 4. Reports the bytes of every table, TOAST table and index, bytes per certificate and B-tree
//    depth. On PostgreSQL it adds the WAL bytes per certificate, and on SQLite the file size
//    and the dbstat breakdown.
//
// Run: node --import tsx bench/storage-size.ts [--count 1000000] [--tenants 10] [--real 2000]
//        [--batch 500] [--concurrency 2] [--checkpoints 4] [--probes 200]
//        [--idempotency-share 1] [--keep]
//      bash scripts/with-postgres.sh node --import tsx bench/storage-size.ts ...   (PostgreSQL)
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';

import { readNotesFile } from '../src/cli/notes-file.ts';
import { loadConfig, type Config } from '../src/config/config.ts';
import type { Certificate } from '../src/core/certificate.ts';
import type { Signer } from '../src/keys/signer.ts';
import { createServices, type Services } from '../src/services/container.ts';
import { sealCertificate, type UnsealedMessage } from '../src/services/seal.ts';
import type { TenantKeys } from '../src/services/keyring.ts';
import { timeOrderedUuid } from '../src/services/time-ordered-id.ts';
import { certificateQuery } from '../src/storage/certificate-query.ts';
import { numberPlaceholders } from '../src/storage/postgres/pg-store.ts';
import type { AppendItem, CertificateFilter } from '../src/storage/store.ts';
import { benchEnv, benchIssueRequest, corpusPath, machineLine, percentile } from './issuance.ts';

/** Certificates issued at once while the real templates are created, so they batch. */
const REAL_ISSUE_CONCURRENCY = 64;
/** Rows returned by each page probe, the API's default page size. */
const PAGE_LIMIT = 50;
/** Width of the time-range probe's issued_at window, in milliseconds. */
const TIME_RANGE_MS = 1_000;
/** Certificates remembered for the id and time-range probes. */
const SAMPLE_SIZE = 10_000;

interface Options {
  count: number;
  tenants: number;
  real: number;
  batch: number;
  concurrency: number;
  checkpoints: number;
  probes: number;
  idempotencyShare: number;
  keep: boolean;
}

interface FillItem extends AppendItem {
  message: UnsealedMessage;
  signer: Signer;
}

/**
 * Milliseconds between the issued_at_utc of consecutive filled certificates. Issuance stamps each
 * request with the current millisecond, so a batch filled within one millisecond would otherwise
 * share one timestamp, and B-tree deduplication would shrink the issued_at index below its size
 * under real traffic.
 */
const FILL_CLOCK_STEP_MS = 1;

interface TenantState {
  tenantId: string;
  keys: TenantKeys;
  /** Certificates in the tenant's chain, which is also its chain head sequence. */
  length: number;
}

/** A stored certificate remembered for the probes. */
interface SampledCertificate {
  tenantId: string;
  certificateId: string;
  issuedAt: string;
}

interface ProbeTiming {
  name: string;
  medianUs: number;
  p95Us: number;
}

interface ProbeRound {
  certificates: number;
  timings: ProbeTiming[];
  /** WAL bytes written per one-certificate append, on PostgreSQL only. */
  walPerAppend: number | undefined;
}

function parsePositiveInteger(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer, got ${text}`);
  }
  return value;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '1000000' },
      tenants: { type: 'string', default: '10' },
      real: { type: 'string', default: '2000' },
      batch: { type: 'string', default: '500' },
      concurrency: { type: 'string', default: '2' },
      checkpoints: { type: 'string', default: '4' },
      probes: { type: 'string', default: '200' },
      'idempotency-share': { type: 'string', default: '1' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`Usage: node --import tsx bench/storage-size.ts [options]
  --count N              certificates in the database at the end (default 1000000)
  --tenants N            tenants the certificates are spread over (default 10)
  --real N               certificates issued through IssuanceService first (default 2000)
  --batch N              certificates per appendCertificates call while filling (default 500)
  --concurrency N        appends in flight while filling, each for other tenants (default 2)
  --checkpoints N        probe rounds during the fill, after equal parts of it (default 4)
  --probes N             calls of each probed operation per round (default 200)
  --idempotency-share F  share of filled certificates that store an idempotency key, 0 to 1 (default 1)
  --keep                 keep the SQLite data folder
PostgreSQL is used when DATABASE_URL is set; the database must be empty.`);
    process.exit(0);
  }
  const options: Options = {
    count: parsePositiveInteger(values.count, '--count'),
    tenants: parsePositiveInteger(values.tenants, '--tenants'),
    real: parsePositiveInteger(values.real, '--real'),
    batch: parsePositiveInteger(values.batch, '--batch'),
    concurrency: parsePositiveInteger(values.concurrency, '--concurrency'),
    checkpoints: parsePositiveInteger(values.checkpoints, '--checkpoints'),
    probes: parsePositiveInteger(values.probes, '--probes'),
    idempotencyShare: Number(values['idempotency-share']),
    keep: values.keep,
  };
  if (
    !Number.isFinite(options.idempotencyShare) ||
    options.idempotencyShare < 0 ||
    options.idempotencyShare > 1
  ) {
    throw new Error(
      `--idempotency-share must be a number from 0 to 1, got ${values['idempotency-share']}`,
    );
  }
  if (options.real > options.count) {
    throw new Error(`--real (${options.real}) must not exceed --count (${options.count})`);
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// Engine inspection: sizes, WAL position and settings, read beside the service's own store.

interface RelationSize {
  relation: string;
  kind: string;
  bytes: number;
  /** Number of B-tree levels, root and leaves included, where the engine reports it. */
  depth?: number | undefined;
  detail?: string | undefined;
}

interface EngineInspector {
  describe(): Promise<string[]>;
  /** Current WAL insert position in bytes, or undefined where the engine has no such counter. */
  walBytes(): Promise<bigint | undefined>;
  checkpoints(): Promise<number | undefined>;
  /** Sizes of the tables that grow with certificates, read after the service closed. */
  sizes(): Promise<RelationSize[]>;
  rowWidths(): Promise<Record<string, number>>;
  explain(tenantId: string, filter: CertificateFilter, afterSequence: number): Promise<string>;
  close(): Promise<void>;
}

const GROWING_TABLES = [
  'certificates',
  'idempotency_keys',
  'chain_heads',
  'log_nodes',
  'log_heads',
  'audit_events',
];

class PostgresInspector implements EngineInspector {
  readonly #client: pg.Client;

  private constructor(client: pg.Client) {
    this.#client = client;
  }

  static async open(url: string): Promise<PostgresInspector> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    return new PostgresInspector(client);
  }

  async #value<T>(sql: string, params: unknown[] = []): Promise<T> {
    const result = await this.#client.query(sql, params);
    return Object.values(result.rows[0] as Record<string, unknown>)[0] as T;
  }

  async assertEmpty(): Promise<void> {
    const table = await this.#value<string | null>("SELECT to_regclass('certificates')::text");
    if (table !== null) {
      const rows = Number(await this.#value<string>('SELECT count(*) FROM certificates'));
      if (rows > 0) {
        throw new Error(
          `the database at DATABASE_URL already contains ${rows} certificates; run against an empty database, for example through scripts/with-postgres.sh`,
        );
      }
    }
  }

  async describe(): Promise<string[]> {
    const names = [
      'server_version',
      'shared_buffers',
      'fsync',
      'synchronous_commit',
      'full_page_writes',
      'wal_compression',
      'max_wal_size',
      'checkpoint_timeout',
    ];
    const result = await this.#client.query<{ name: string; setting: string }>(
      'SELECT name, current_setting(name) AS setting FROM unnest($1::text[]) AS name',
      [names],
    );
    return [`PostgreSQL ${result.rows.map((row) => `${row.name}=${row.setting}`).join(', ')}`];
  }

  async walBytes(): Promise<bigint> {
    return BigInt(await this.#value<string>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"));
  }

  async checkpoints(): Promise<number> {
    // PostgreSQL 17 moved the checkpoint counters from pg_stat_bgwriter to pg_stat_checkpointer.
    const version = Number(
      await this.#value<string>("SELECT current_setting('server_version_num')"),
    );
    const sql =
      version >= 170000
        ? 'SELECT num_timed + num_requested FROM pg_stat_checkpointer'
        : 'SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter';
    return Number(await this.#value<string>(sql));
  }

  async sizes(): Promise<RelationSize[]> {
    await this.#client.query(`VACUUM (ANALYZE) ${GROWING_TABLES.join(', ')}`);
    const sizes: RelationSize[] = [];
    const tables = await this.#client.query<Record<string, string>>(
      `SELECT relname, pg_relation_size(oid) AS heap, pg_table_size(oid) AS table_total,
         COALESCE(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0) AS toast,
         pg_indexes_size(oid) AS indexes, pg_total_relation_size(oid) AS total
       FROM pg_class WHERE relkind = 'r' AND relname = ANY($1) ORDER BY pg_total_relation_size(oid) DESC`,
      [GROWING_TABLES],
    );
    const depths = await this.#indexDepths();
    for (const table of tables.rows) {
      const name = table['relname']!;
      sizes.push({ relation: name, kind: 'heap (main fork)', bytes: Number(table['heap']) });
      sizes.push({
        relation: name,
        kind: 'TOAST table and its index',
        bytes: Number(table['toast']),
      });
      sizes.push({
        relation: name,
        kind: 'pg_table_size (heap, TOAST, free space and visibility maps)',
        bytes: Number(table['table_total']),
      });
      const indexes = await this.#client.query<{ name: string; bytes: string; definition: string }>(
        `SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS bytes,
           pg_get_indexdef(indexrelid) AS definition
         FROM pg_index WHERE indrelid = $1::regclass ORDER BY pg_relation_size(indexrelid) DESC`,
        [name],
      );
      for (const index of indexes.rows) {
        const columns = /\((.*)\)$/.exec(index.definition)?.[1] ?? index.definition;
        sizes.push({
          relation: index.name,
          kind: `index on (${columns})`,
          bytes: Number(index.bytes),
          depth: depths.get(index.name)?.depth,
          detail: depths.get(index.name)?.detail,
        });
      }
      sizes.push({ relation: name, kind: 'pg_indexes_size', bytes: Number(table['indexes']) });
      sizes.push({ relation: name, kind: 'pg_total_relation_size', bytes: Number(table['total']) });
    }
    const database = Number(
      await this.#value<string>('SELECT pg_database_size(current_database())'),
    );
    sizes.push({ relation: '(database)', kind: 'pg_database_size', bytes: database });
    return sizes;
  }

  /** Reads B-tree levels and leaf density with pgstattuple's pgstatindex, when it can be installed. */
  async #indexDepths(): Promise<Map<string, { depth: number; detail: string }>> {
    const depths = new Map<string, { depth: number; detail: string }>();
    try {
      await this.#client.query('CREATE EXTENSION IF NOT EXISTS pgstattuple');
    } catch (error) {
      console.log(
        `pgstattuple is not available, so B-tree depth is not reported: ${String(error)}`,
      );
      return depths;
    }
    const result = await this.#client.query<Record<string, string>>(
      `SELECT i.indexrelid::regclass::text AS name, s.tree_level, s.leaf_pages, s.internal_pages,
         s.avg_leaf_density
       FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid, LATERAL pgstatindex(i.indexrelid::regclass) s
       WHERE t.relname = ANY($1)`,
      [GROWING_TABLES],
    );
    for (const row of result.rows) {
      depths.set(row['name']!, {
        // tree_level counts the levels above the leaves, so a root that is a leaf has level 0.
        depth: Number(row['tree_level']) + 1,
        detail: `${row['leaf_pages']} leaf and ${row['internal_pages']} internal pages, leaf density ${Number(row['avg_leaf_density']).toFixed(0)} %`,
      });
    }
    return depths;
  }

  async rowWidths(): Promise<Record<string, number>> {
    const result = await this.#client.query<Record<string, string>>(
      `SELECT avg(pg_column_size(c.*)) AS row_bytes, avg(octet_length(signed_message)) AS signed_message_bytes,
         avg(octet_length(signature)) AS signature_bytes FROM certificates c`,
    );
    const keys = await this.#client.query<Record<string, string>>(
      'SELECT avg(pg_column_size(k.*)) AS idempotency_row_bytes FROM idempotency_keys k',
    );
    return Object.fromEntries(
      Object.entries({ ...result.rows[0], ...keys.rows[0] }).map(([name, value]) => [
        name,
        Number(value),
      ]),
    );
  }

  async explain(
    tenantId: string,
    filter: CertificateFilter,
    afterSequence: number,
  ): Promise<string> {
    const { sql, params } = certificateQuery(tenantId, filter, afterSequence, PAGE_LIMIT);
    const result = await this.#client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN (COSTS OFF) ${numberPlaceholders(sql)}`,
      params,
    );
    return result.rows.map((row) => row['QUERY PLAN'].trim()).join(' / ');
  }

  close(): Promise<void> {
    return this.#client.end();
  }
}

class SqliteInspector implements EngineInspector {
  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
  }

  #open<T>(work: (db: Database.Database) => T): T {
    const db = new Database(this.#path, { readonly: true });
    try {
      return work(db);
    } finally {
      db.close();
    }
  }

  describe(): Promise<string[]> {
    return Promise.resolve([
      `SQLite ${this.#open((db) => (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v)}, WAL mode, synchronous=NORMAL`,
    ]);
  }

  walBytes(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  checkpoints(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  sizes(): Promise<RelationSize[]> {
    const fileBytes = (suffix: string) =>
      existsSync(this.#path + suffix) ? statSync(this.#path + suffix).size : 0;
    return Promise.resolve(
      this.#open((db) => {
        const objects = db
          .prepare(
            `SELECT s.name AS name, m.type AS type, m.tbl_name AS table_name, SUM(s.pgsize) AS bytes,
               MAX(LENGTH(s.path) - LENGTH(REPLACE(s.path, '/', ''))) AS depth,
               SUM(s.pagetype = 'overflow') AS overflow_pages
             FROM dbstat s JOIN sqlite_master m ON m.name = s.name
             WHERE m.tbl_name IN (${GROWING_TABLES.map(() => '?').join(', ')})
             GROUP BY s.name ORDER BY bytes DESC`,
          )
          .all(...GROWING_TABLES) as {
          name: string;
          type: string;
          table_name: string;
          bytes: number;
          depth: number;
          overflow_pages: number;
        }[];
        const indexColumns = (name: string) =>
          (
            db.prepare('SELECT name FROM pragma_index_info(?) ORDER BY seqno').all(name) as {
              name: string;
            }[]
          )
            .map((column) => column.name)
            .join(', ');
        const sizes: RelationSize[] = objects.map((object) => ({
          relation: object.name,
          kind:
            object.type === 'table'
              ? 'table B-tree'
              : `index on ${object.table_name} (${indexColumns(object.name)})`,
          bytes: object.bytes,
          depth: object.depth,
          detail: object.overflow_pages > 0 ? `${object.overflow_pages} overflow pages` : undefined,
        }));
        const pageSize = (db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size;
        sizes.push({
          relation: '(database file)',
          kind: `file size, page size ${pageSize}`,
          bytes: fileBytes(''),
        });
        sizes.push({ relation: '(WAL file)', kind: 'file size', bytes: fileBytes('-wal') });
        return sizes;
      }),
    );
  }

  rowWidths(): Promise<Record<string, number>> {
    return Promise.resolve(
      this.#open(
        (db) =>
          db
            .prepare(
              `SELECT AVG(LENGTH(CAST(signed_message AS BLOB))) AS signed_message_bytes,
                 AVG(LENGTH(signature)) AS signature_bytes FROM certificates`,
            )
            .get() as Record<string, number>,
      ),
    );
  }

  explain(tenantId: string, filter: CertificateFilter, afterSequence: number): Promise<string> {
    const { sql, params } = certificateQuery(tenantId, filter, afterSequence, PAGE_LIMIT);
    return Promise.resolve(
      this.#open((db) =>
        (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[])
          .map((row) => row.detail)
          .join(' / '),
      ),
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

// ---------------------------------------------------------------------------------------------
// Filling and probing.

/** Copies the hashes and versions of a real certificate into a new certificate for `tenant`. */
function unsealedFrom(
  template: Certificate,
  tenant: TenantState,
  issuedAt: string,
): UnsealedMessage {
  return {
    attestation_meaning: template.attestation_meaning ?? null,
    certificate_id: timeOrderedUuid(Date.parse(issuedAt)),
    encounter_id_hash: template.encounter_id_hash,
    format_version: template.format_version,
    governance_policy_hash: template.governance_policy_hash,
    governance_policy_version: template.governance_policy_version,
    human_attested_at_utc: template.human_reviewed ? issuedAt : null,
    human_reviewed: template.human_reviewed,
    human_reviewer_id_hash: template.human_reviewer_id_hash,
    issued_at_utc: issuedAt,
    key_id: tenant.keys.signer.keyId,
    model_name: template.model_name,
    model_version: template.model_version,
    nonce: randomBytes(16).toString('hex'),
    note_hash: template.note_hash,
    patient_hash: template.patient_hash,
    prompt_version: template.prompt_version,
    tenant_id: tenant.tenantId,
  };
}

const sealFillItem = (item: FillItem, link: { sequence: number; previousHash: string | null }) =>
  sealCertificate(item.message, link, item.message.issued_at_utc, item.signer);

class Filler {
  readonly #services: Services;
  readonly #tenants: TenantState[];
  readonly #templates: Certificate[];
  readonly #options: Options;
  readonly samples: SampledCertificate[] = [];
  #created = 0;
  #keyed = 0;
  #clockMs = Date.now();
  #sampleEvery: number;

  constructor(
    services: Services,
    tenants: TenantState[],
    templates: Certificate[],
    options: Options,
  ) {
    this.#services = services;
    this.#tenants = tenants;
    this.#templates = templates;
    this.#options = options;
    this.#sampleEvery = Math.max(1, Math.floor(options.count / SAMPLE_SIZE));
  }

  get keyed(): number {
    return this.#keyed;
  }

  newItem(tenant: TenantState): FillItem {
    const n = this.#created++;
    const issuedAt = new Date(this.#clockMs).toISOString();
    this.#clockMs += FILL_CLOCK_STEP_MS;
    const item: FillItem = {
      message: unsealedFrom(this.#templates[n % this.#templates.length]!, tenant, issuedAt),
      signer: tenant.keys.signer,
    };
    // Spread keyed items evenly: item n is keyed when the running share crosses a whole number.
    if (
      Math.floor((n + 1) * this.#options.idempotencyShare) >
      Math.floor(n * this.#options.idempotencyShare)
    ) {
      item.idempotencyKey = tenant.keys.hashIdentifier('idempotency_key', `fill-${n}`);
      item.requestHash = tenant.keys.hashIdentifier('idempotency_request', `fill-${n}`);
      this.#keyed += 1;
    }
    return item;
  }

  /** Appends `items` for one tenant and remembers every sampleEvery-th certificate. */
  async append(tenant: TenantState, items: FillItem[]): Promise<void> {
    const results = await this.#services.store.appendCertificates(
      tenant.tenantId,
      items,
      sealFillItem,
    );
    for (const result of results) {
      if (result.kind !== 'created') {
        throw new Error(
          `fill append for ${tenant.tenantId} returned ${result.kind}, expected created`,
        );
      }
      tenant.length = result.row.chain_sequence;
      if (result.row.chain_sequence % this.#sampleEvery === 0) {
        this.samples.push({
          tenantId: tenant.tenantId,
          certificateId: result.row.certificate_id,
          issuedAt: result.row.issued_at_utc,
        });
      }
    }
  }

  /**
   * Appends `count` certificates in batches. Worker w of the concurrent workers fills only the
   * tenants whose index modulo the worker count is w, so no two appends wait for one chain head.
   */
  async fill(count: number, onProgress: (done: number) => void): Promise<void> {
    let remaining = count;
    let done = 0;
    const workers = Math.min(this.#options.concurrency, this.#tenants.length);
    const work = async (worker: number) => {
      const own = this.#tenants.filter((_, index) => index % workers === worker);
      for (let turn = 0; remaining > 0; turn++) {
        const size = Math.min(this.#options.batch, remaining);
        remaining -= size;
        const tenant = own[turn % own.length]!;
        await this.append(
          tenant,
          Array.from({ length: size }, () => this.newItem(tenant)),
        );
        done += size;
        onProgress(done);
      }
    };
    await Promise.all(Array.from({ length: workers }, (_, worker) => work(worker)));
  }
}

function randomOf<T>(values: readonly T[]): T {
  return values[Math.floor(Math.random() * values.length)]!;
}

async function timeCalls(
  name: string,
  calls: number,
  call: () => Promise<unknown>,
): Promise<ProbeTiming> {
  const micros: number[] = [];
  for (let i = 0; i < calls; i++) {
    const start = process.hrtime.bigint();
    await call();
    micros.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  return { name, medianUs: percentile(micros, 0.5), p95Us: percentile(micros, 0.95) };
}

async function probeRound(
  services: Services,
  filler: Filler,
  tenants: TenantState[],
  inspector: EngineInspector,
  calls: number,
): Promise<ProbeRound> {
  const store = services.store;
  const timings: ProbeTiming[] = [];
  const walBefore = await inspector.walBytes();
  timings.push(
    await timeCalls('append 1 certificate', calls, () => {
      const tenant = randomOf(tenants);
      return filler.append(tenant, [filler.newItem(tenant)]);
    }),
  );
  const walAfter = await inspector.walBytes();
  timings.push(
    await timeCalls('by sequence', calls, async () => {
      const tenant = randomOf(tenants);
      const row = await store.getCertificateBySequence(
        tenant.tenantId,
        1 + Math.floor(Math.random() * tenant.length),
      );
      if (!row) {
        throw new Error(`probe by sequence found no certificate for ${tenant.tenantId}`);
      }
    }),
  );
  timings.push(
    await timeCalls('by id', calls, async () => {
      const sample = randomOf(filler.samples);
      const row = await store.getCertificate(sample.tenantId, sample.certificateId);
      if (!row) {
        throw new Error(`probe by id found no certificate ${sample.certificateId}`);
      }
    }),
  );
  timings.push(
    await timeCalls(`page of ${PAGE_LIMIT} after a cursor`, calls, async () => {
      const tenant = randomOf(tenants);
      const after = Math.floor(Math.random() * Math.max(1, tenant.length - PAGE_LIMIT));
      await store.queryCertificates(tenant.tenantId, {}, after, PAGE_LIMIT);
    }),
  );
  timings.push(
    await timeCalls(`page of ${PAGE_LIMIT} in a 1 s issued_at range`, calls, async () => {
      const sample = randomOf(filler.samples);
      const issuedTo = new Date(Date.parse(sample.issuedAt) + TIME_RANGE_MS).toISOString();
      const rows = await store.queryCertificates(
        sample.tenantId,
        { issuedFrom: sample.issuedAt, issuedTo },
        0,
        PAGE_LIMIT,
      );
      if (rows.length === 0) {
        throw new Error(`time-range probe found nothing from ${sample.issuedAt}`);
      }
    }),
  );
  const certificates = tenants.reduce((sum, tenant) => sum + tenant.length, 0);
  return {
    certificates,
    timings,
    walPerAppend:
      walBefore === undefined || walAfter === undefined
        ? undefined
        : Number(walAfter - walBefore) / calls,
  };
}

// ---------------------------------------------------------------------------------------------
// Reports.

const formatInteger = (value: number) => Math.round(value).toLocaleString('en-US');

function markdownTable(header: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => row[i]!.length)),
  );
  const line = (cells: string[]) =>
    '| ' +
    cells
      .map((text, i) => (rightAligned[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!)))
      .join(' | ') +
    ' |';
  const rule =
    '|' +
    widths
      .map((w, i) => (rightAligned[i] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2)))
      .join('|') +
    '|';
  return [line(header), rule, ...rows.map(line)].join('\n');
}

function printProbeRounds(rounds: ProbeRound[]): void {
  const names = rounds[0]!.timings.map((timing) => timing.name);
  const header = ['certificates', ...names.map((name) => `${name}, median / p95 µs`)];
  const rows = rounds.map((round) => [
    formatInteger(round.certificates),
    ...round.timings.map((timing) => `${timing.medianUs.toFixed(0)} / ${timing.p95Us.toFixed(0)}`),
  ]);
  console.log(
    markdownTable(
      header,
      rows,
      header.map(() => true),
    ),
  );
  if (rounds[0]!.walPerAppend !== undefined) {
    console.log(
      `WAL bytes per one-certificate append: ${rounds.map((round) => formatInteger(round.walPerAppend!)).join(', ')}`,
    );
  }
}

function printSizes(sizes: RelationSize[], certificates: number): void {
  const rows = sizes.map((size) => [
    size.relation,
    size.kind,
    formatInteger(size.bytes),
    (size.bytes / 1e6).toFixed(1),
    (size.bytes / certificates).toFixed(1),
    size.depth === undefined ? '' : String(size.depth),
    size.detail ?? '',
  ]);
  console.log(
    markdownTable(
      ['relation', 'measure', 'bytes', 'MB', 'bytes per certificate', 'B-tree levels', 'detail'],
      rows,
      [false, false, true, true, true, true, false],
    ),
  );
}

// ---------------------------------------------------------------------------------------------

async function issueRealCertificates(
  services: Services,
  tenants: TenantState[],
  count: number,
): Promise<Certificate[]> {
  const notes = readNotesFile(corpusPath());
  const certificates: Certificate[] = [];
  for (let start = 0; start < count; start += REAL_ISSUE_CONCURRENCY) {
    const chunk = Array.from(
      { length: Math.min(REAL_ISSUE_CONCURRENCY, count - start) },
      (_, i) => {
        const n = start + i;
        const tenant = tenants[n % tenants.length]!;
        return services.issuance.issue(
          tenant.tenantId,
          benchIssueRequest(notes[n % notes.length]!, n),
          `real-${n}`,
        );
      },
    );
    for (const outcome of await Promise.all(chunk)) {
      certificates.push(outcome.certificate);
    }
  }
  return certificates;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-size-'));
  const config: Config = loadConfig(benchEnv(dataDir));
  let inspector: EngineInspector;
  if (config.databaseUrl !== undefined) {
    const postgres = await PostgresInspector.open(config.databaseUrl);
    await postgres.assertEmpty();
    inspector = postgres;
  } else {
    inspector = new SqliteInspector(config.sqlitePath);
  }

  const services = await createServices(config, { migrate: true });
  console.log(`machine: ${machineLine()}, load average ${loadavg()[0]!.toFixed(1)}`);
  for (const line of await inspector.describe()) {
    console.log(line);
  }
  console.log(
    `plan: ${formatInteger(options.count)} certificates over ${options.tenants} tenants, ${options.real} issued through the service, ` +
      `the rest appended in batches of ${options.batch} with ${options.concurrency} in flight; ` +
      `idempotency keys on ${(options.idempotencyShare * 100).toFixed(0)} % of filled certificates`,
  );

  const tenants: TenantState[] = [];
  for (let i = 0; i < options.tenants; i++) {
    const tenantId = `hospital-${String(i).padStart(4, '0')}`;
    await services.tenants.create(tenantId);
    const keys = await services.keyring.get(tenantId);
    if (!keys) {
      throw new Error(`tenant ${tenantId} was created but its keys were not found`);
    }
    tenants.push({ tenantId, keys, length: 0 });
  }

  const realStart = performance.now();
  const templates = await issueRealCertificates(services, tenants, options.real);
  for (const certificate of templates) {
    const tenant = tenants.find((entry) => entry.tenantId === certificate.tenant_id)!;
    tenant.length = Math.max(tenant.length, certificate.chain_sequence);
  }
  console.log(
    `issued ${templates.length} real certificates in ${((performance.now() - realStart) / 1000).toFixed(1)} s`,
  );

  const filler = new Filler(services, tenants, templates, options);
  // Seed the probe samples with the real certificates, so the first round has ids to look up.
  for (const certificate of templates.filter((_, i) => i % 10 === 0)) {
    filler.samples.push({
      tenantId: certificate.tenant_id,
      certificateId: certificate.certificate_id,
      issuedAt: certificate.issued_at_utc,
    });
  }
  const rounds: ProbeRound[] = [
    await probeRound(services, filler, tenants, inspector, options.probes),
  ];

  const probeAppends = options.probes * (options.checkpoints + 1);
  const toFill = Math.max(0, options.count - options.real - probeAppends);
  const checkpointsStart = await inspector.checkpoints();
  let fillWalBytes: bigint | undefined;
  let fillSeconds = 0;
  let fillCpuSeconds = 0;
  let filled = 0;
  let nextReport = toFill / 10;
  for (let part = 0; part < options.checkpoints; part++) {
    const partCount =
      Math.floor((toFill * (part + 1)) / options.checkpoints) -
      Math.floor((toFill * part) / options.checkpoints);
    const walStart = await inspector.walBytes();
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    await filler.fill(partCount, (done) => {
      if (filled + done >= nextReport) {
        nextReport += toFill / 10;
        const seconds = fillSeconds + (performance.now() - start) / 1000;
        console.log(
          `  filled ${formatInteger(filled + done)} of ${formatInteger(toFill)} in ${seconds.toFixed(0)} s, ` +
            `${((filled + done) / seconds).toFixed(0)}/s, load average ${loadavg()[0]!.toFixed(1)}`,
        );
      }
    });
    const cpu = process.cpuUsage(cpuStart);
    fillCpuSeconds += (cpu.user + cpu.system) / 1e6;
    fillSeconds += (performance.now() - start) / 1000;
    filled += partCount;
    const walEnd = await inspector.walBytes();
    if (walStart !== undefined && walEnd !== undefined) {
      fillWalBytes = (fillWalBytes ?? 0n) + walEnd - walStart;
    }
    rounds.push(await probeRound(services, filler, tenants, inspector, options.probes));
  }
  const checkpointsEnd = await inspector.checkpoints();

  // The plans of the two page probes, for a cursor in the middle of one tenant's chain and for
  // a 1 s window at its last sampled certificate, which is also verified.
  const planTenant = tenants[0]!;
  const lastSample = filler.samples
    .filter((sample) => sample.tenantId === planTenant.tenantId)
    .at(-1)!;
  const verified = await services.certificates.verify(
    planTenant.tenantId,
    lastSample.certificateId,
  );
  const total = tenants.reduce((sum, tenant) => sum + tenant.length, 0);
  const plans = [
    `page after a cursor: ${await inspector.explain(planTenant.tenantId, {}, Math.floor(planTenant.length / 2))}`,
    `page in a 1 s issued_at range: ${await inspector.explain(
      planTenant.tenantId,
      {
        issuedFrom: lastSample.issuedAt,
        issuedTo: new Date(Date.parse(lastSample.issuedAt) + TIME_RANGE_MS).toISOString(),
      },
      0,
    )}`,
  ];
  await services.close();

  console.log('');
  console.log(
    `fill: ${formatInteger(filled)} certificates in ${fillSeconds.toFixed(1)} s, ${(filled / fillSeconds).toFixed(0)}/s, ` +
      `${fillCpuSeconds.toFixed(1)} s of CPU in this process (sealing, signing, driver); ${formatInteger(total)} certificates in total, ` +
      `${formatInteger(filler.keyed + options.real)} with an idempotency key`,
  );
  if (fillWalBytes !== undefined) {
    console.log(
      `WAL written by the fill appends: ${formatInteger(Number(fillWalBytes))} bytes, ` +
        `${(Number(fillWalBytes) / filled).toFixed(0)} bytes per certificate; ` +
        `${checkpointsEnd! - checkpointsStart!} checkpoints during the fill and its probes`,
    );
  }
  console.log(
    `a filled certificate verifies against its stored predecessor: ${verified.valid ? 'yes' : `NO (${verified.summary})`}`,
  );
  console.log('');
  printProbeRounds(rounds);
  console.log('');
  for (const plan of plans) {
    console.log(`plan, ${plan}`);
  }
  console.log('');
  printSizes(await inspector.sizes(), total);
  console.log('');
  const widths = await inspector.rowWidths();
  console.log(
    `average widths in bytes: ${Object.entries(widths)
      .map(([name, value]) => `${name} ${value.toFixed(0)}`)
      .join(', ')}`,
  );
  await inspector.close();

  if (!verified.valid) {
    process.exitCode = 1;
  }
  if (options.keep) {
    console.log(`kept data folder ${dataDir}`);
  } else {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
