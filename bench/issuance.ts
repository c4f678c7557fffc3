// Measures certificate issuance over HTTP: certificates/s and p50/p99 latency at several
// connection counts, for one tenant and for many tenants. The server runs in a child process
// (`node bin/cdil.mjs serve`) on a throwaway SQLite database, or on PostgreSQL when
// DATABASE_URL is set, so the load generator does not share its event loop. Every 2xx body is
// checked to be a certificate for the note and tenant sent, and at the end the per-tenant counts
// are compared with the chain heads in the database. On Linux each cell also reports the CPU
// time per certificate of the server processes, of a PostgreSQL server on this machine, and of
// this process, which is less sensitive than throughput to other programs on a shared machine.
//
// Run: node --import tsx bench/issuance.ts [--quick] [--duration 10] [--connections 1,16,64]
//        [--tenants 1,50] [--warmup 3] [--workers 1] [--server-cpu-prof DIR] [--keep]
// Note bodies come from $CDIL_REFERENCE_DATA/mtsamples/notes.jsonl.gz, where
// CDIL_REFERENCE_DATA defaults to ../shared/data relative to the repository root.
import Database from 'better-sqlite3';
import pg from 'pg';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { loadConfig, type Config } from '../src/config/config.ts';
import { sha256Hex } from '../src/core/certificate.ts';
import { nodeCrypto } from '../src/core/crypto-node.ts';
import { readNotesFile, type NoteRecord } from '../src/cli/notes-file.ts';
import type { IssueRequest } from '../src/services/issuance.ts';
import { signToken } from '../src/server/auth.ts';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));
const ISSUE_PATH = '/v1/clinical/documentation';
const SERVER_START_TIMEOUT_MS = 30_000;
const SERVER_STOP_TIMEOUT_MS = 35_000;
const TOKEN_TTL_SECONDS = 4 * 3600;

// autocannon 8 ships no type declarations, so the subset used here is declared by hand.
export interface AutocannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  setupRequest?: (
    request: AutocannonRequest,
    context: Record<string, unknown>,
  ) => AutocannonRequest;
  onResponse?: (status: number, body: string, context: Record<string, unknown>) => void;
}

export interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
}

type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  requests: AutocannonRequest[];
}) => Promise<AutocannonResult>;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** One note prepared as a request body, with the note_hash a certificate for it must carry. */
export interface PreparedNote {
  body: Buffer;
  noteHash: string;
}

export interface TenantToken {
  tenantId: string;
  token: string;
}

export interface CellResult {
  tenants: number;
  connections: number;
  seconds: number;
  certificatesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  ok2xx: number;
  certificates: number;
  invalidBodies: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCounts: Record<string, number>;
  samples: string[];
  /** 1-minute load average of the machine when the cell ended. */
  loadAverage?: number | undefined;
  /** CPU µs per certificate of the server processes, PostgreSQL, and this load generator. */
  cpuPerCertificateUs?: CpuPerCertificate | undefined;
}

export interface CpuPerCertificate {
  server: number | undefined;
  database: number | undefined;
  loadGenerator: number;
}

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Returns the path of the MTSamples corpus, or exits with a message when it is missing. */
export function corpusPath(): string {
  const dataDir = resolve(repoRoot, process.env['CDIL_REFERENCE_DATA'] ?? '../shared/data');
  const path = resolve(dataDir, 'mtsamples/notes.jsonl.gz');
  if (!existsSync(path)) {
    console.error(
      `reference corpus not found at ${path}; set CDIL_REFERENCE_DATA to the data folder`,
    );
    process.exit(1);
  }
  return path;
}

/** Builds the issue request the benchmarks send for one corpus note. */
export function benchIssueRequest(note: NoteRecord, index: number): IssueRequest {
  return {
    model_name: 'bench-scribe',
    model_version: '2026.11',
    prompt_version: 'soap-v3',
    governance_policy_version: 'policy-2026-10',
    note_text: note.text,
    human_reviewed: true,
    human_reviewer_id: `reviewer-${index % 7}`,
    encounter_id: `enc-${note.id}`,
    patient_reference: `patient-${note.id}`,
  };
}

/** Serializes one issue request per corpus note. Identifiers are derived from the note id. */
export function prepareNotes(): PreparedNote[] {
  return readNotesFile(corpusPath()).map((note, index) => ({
    body: Buffer.from(JSON.stringify(benchIssueRequest(note, index))),
    noteHash: sha256Hex(nodeCrypto, note.text),
  }));
}

/** Describes the machine for result headers: core count, CPU model and Node version. */
export function machineLine(): string {
  return `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, node ${process.version}`;
}

/** Builds the environment shared by this process and the server child for one data folder. */
export function benchEnv(dataDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CDIL_ENV: 'development',
    CDIL_DATA_DIR: dataDir,
    CDIL_LOG_LEVEL: 'warn',
  };
}

/**
 * Starts `cdil serve` on 127.0.0.1 with an OS-chosen port and resolves once it listens.
 * With cpuProfileDir set, the child writes a V8 CPU profile there when it exits. With
 * withoutMerkleLog set, the child loads bench/without-merkle-log.ts first and appends without
 * its append thread, which that preload does not reach.
 */
export function startServerProcess(
  dataDir: string,
  cpuProfileDir?: string,
  workers = 1,
  withoutMerkleLog = false,
): Promise<ServerProcess> {
  const nodeArgs = cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : [];
  if (withoutMerkleLog) {
    nodeArgs.push('--import', 'tsx', '--import', join(repoRoot, 'bench/without-merkle-log.ts'));
  }
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      join(repoRoot, 'bin/cdil.mjs'),
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--workers',
      String(workers),
    ],
    {
      cwd: repoRoot,
      env: withoutMerkleLog
        ? { ...benchEnv(dataDir), CDIL_SQLITE_APPEND_THREAD: 'false' }
        : benchEnv(dataDir),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout.on('data', (chunk: Buffer) =>
    process.stderr.write(`[server] ${chunk.toString('utf8')}`),
  );
  const exited = new Promise<void>((done) => child.once('exit', () => done()));

  return new Promise((resolveStart, rejectStart) => {
    let stderr = '';
    let listening = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rejectStart(
        new Error(`server did not start within ${SERVER_START_TIMEOUT_MS} ms; output:\n${stderr}`),
      );
    }, SERVER_START_TIMEOUT_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      rejectStart(
        new Error(`server exited with status ${code} before listening; output:\n${stderr}`),
      );
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (listening) {
        process.stderr.write(`[server] ${chunk.toString('utf8')}`);
        return;
      }
      stderr += chunk.toString('utf8');
      const match = /development server on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (match) {
        listening = true;
        clearTimeout(timer);
        resolveStart({
          url: match[1]!,
          child,
          stop: async () => {
            if (child.exitCode === null) {
              child.kill('SIGTERM');
              const killTimer = setTimeout(() => child.kill('SIGKILL'), SERVER_STOP_TIMEOUT_MS);
              await exited;
              clearTimeout(killTimer);
            }
          },
        });
      }
    });
  });
}

let clockTicksPerSecond: number | undefined;

/** Reads the CPU ticks of one process and its reaped children from /proc, or 0 if it exited. */
function processTicks(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  // The command name in parentheses may contain spaces, so fields are counted after the last ')'.
  // Field 3 (state) comes first, so utime, stime, cutime and cstime (fields 14 to 17) are 11 to 14.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index]), 0);
}

function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8')
        .split(' ')
        .filter((text) => text.trim() !== '')
        .map(Number),
    );
  } catch {
    return [];
  }
}

/**
 * Returns the CPU seconds used so far by process `pid` and every descendant, live or already
 * reaped. Reads /proc, so it returns undefined on systems without it.
 */
export function processTreeCpuSeconds(pid: number): number | undefined {
  if (!existsSync(`/proc/${pid}/stat`)) {
    return undefined;
  }
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  let ticks = 0;
  const pending = [pid];
  while (pending.length > 0) {
    const next = pending.pop()!;
    ticks += processTicks(next);
    pending.push(...childPids(next));
  }
  return ticks / clockTicksPerSecond;
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '']);

/**
 * Returns the process id of the PostgreSQL server at `url` when it runs on this machine, found
 * as the parent of this connection's backend, so its CPU time can be read. Returns undefined for
 * a remote server or when /proc does not show it.
 */
export async function findLocalPostmaster(url: string): Promise<number | undefined> {
  if (!LOCAL_HOSTS.has(new URL(url).hostname)) {
    return undefined;
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const status = readFileSync(`/proc/${result.rows[0]!.pid}/status`, 'utf8');
    const parent = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
    const name = readFileSync(`/proc/${parent}/comm`, 'utf8').trim();
    return name === 'postgres' ? parent : undefined;
  } catch {
    return undefined;
  } finally {
    await client.end();
  }
}

/** CPU seconds of the server processes, PostgreSQL and this process at one moment. */
interface CpuSnapshot {
  server: number | undefined;
  database: number | undefined;
  loadGenerator: number;
}

function cpuSnapshot(
  serverPid: number | undefined,
  postmasterPid: number | undefined,
): CpuSnapshot {
  const own = process.cpuUsage();
  return {
    server: serverPid === undefined ? undefined : processTreeCpuSeconds(serverPid),
    database: postmasterPid === undefined ? undefined : processTreeCpuSeconds(postmasterPid),
    loadGenerator: (own.user + own.system) / 1e6,
  };
}

function cpuPerCertificate(
  before: CpuSnapshot,
  after: CpuSnapshot,
  certificates: number,
): CpuPerCertificate {
  const per = (start: number | undefined, end: number | undefined) =>
    start === undefined || end === undefined ? undefined : ((end - start) * 1e6) / certificates;
  return {
    server: per(before.server, after.server),
    database: per(before.database, after.database),
    loadGenerator: per(before.loadGenerator, after.loadGenerator)!,
  };
}

/** Creates tenants through the admin API and returns a clinician token for each. */
export async function provisionTenants(
  config: Config,
  url: string,
  tenantIds: string[],
): Promise<TenantToken[]> {
  const auth = { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience };
  const admin = await signToken(auth, {
    subject: 'bench-admin',
    roles: ['admin'],
    ttlSeconds: TOKEN_TTL_SECONDS,
  });
  const tokens: TenantToken[] = [];
  for (const tenantId of tenantIds) {
    const response = await fetch(`${url}/v1/admin/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant_id: tenantId }),
    });
    if (response.status !== 201 && response.status !== 409) {
      throw new Error(
        `creating tenant ${tenantId} failed with status ${response.status}: ${await response.text()}`,
      );
    }
    tokens.push({ tenantId, token: await clinicianToken(config, tenantId) });
  }
  return tokens;
}

export function clinicianToken(config: Config, tenantId: string): Promise<string> {
  const auth = { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience };
  return signToken(auth, {
    subject: 'bench-scribe',
    roles: ['clinician'],
    tenantId,
    ttlSeconds: TOKEN_TTL_SECONDS,
  });
}

/** Counts certificates per tenant across every load run, to compare with the database. */
export type IssuedCounts = Map<string, number>;

const MAX_SAMPLES = 5;

/**
 * Runs one autocannon measurement. Requests rotate through every note and, request by request,
 * through the given tenants. `issued` is incremented for every verified certificate.
 */
export async function runLoadCell(options: {
  url: string;
  tokens: TenantToken[];
  notes: PreparedNote[];
  connections: number;
  seconds: number;
  issued: IssuedCounts;
  /** Offset into the note rotation, so consecutive runs do not start on the same notes. */
  firstNote?: number;
}): Promise<CellResult> {
  const { tokens, notes, issued } = options;
  const authorization = tokens.map((entry) => `Bearer ${entry.token}`);
  let counter = options.firstNote ?? 0;
  let certificates = 0;
  let invalidBodies = 0;
  const latencies: number[] = [];
  const samples: string[] = [];
  const keep = (text: string) => {
    if (samples.length < MAX_SAMPLES) {
      samples.push(text.slice(0, 300));
    }
  };

  const request: AutocannonRequest = {
    method: 'POST',
    path: ISSUE_PATH,
    setupRequest: (current, context) => {
      const n = counter++;
      const note = notes[n % notes.length]!;
      const tenant = n % tokens.length;
      context['tenantId'] = tokens[tenant]!.tenantId;
      context['noteHash'] = note.noteHash;
      // autocannon 8 calls setupRequest right before it writes the request to the socket
      // (Client._doRequest), except for a connection's first request, which is built earlier.
      context['sentAt'] = performance.now();
      return {
        ...current,
        headers: { 'content-type': 'application/json', authorization: authorization[tenant]! },
        body: note.body,
      };
    },
    onResponse: (status, body, context) => {
      latencies.push(performance.now() - (context['sentAt'] as number));
      if (status < 200 || status > 299) {
        keep(`status ${status}: ${body}`);
        return;
      }
      const problem = certificateProblem(
        body,
        context['tenantId'] as string,
        context['noteHash'] as string,
      );
      if (problem) {
        invalidBodies += 1;
        keep(`status ${status}, ${problem}: ${body}`);
        return;
      }
      certificates += 1;
      const tenantId = context['tenantId'] as string;
      issued.set(tenantId, (issued.get(tenantId) ?? 0) + 1);
    },
  };

  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.seconds,
    requests: [request],
  });
  const statusCounts: Record<string, number> = {};
  for (const [status, stat] of Object.entries(result.statusCodeStats)) {
    statusCounts[status] = stat.count;
  }
  return {
    tenants: tokens.length,
    connections: options.connections,
    seconds: result.duration,
    certificatesPerSecond: certificates / result.duration,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    maxMs: percentile(latencies, 1),
    ok2xx: result['2xx'],
    certificates,
    invalidBodies,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCounts,
    samples,
  };
}

/** Returns the value below which `fraction` of the samples fall; sorts `samples` in place. */
export function percentile(samples: number[], fraction: number): number {
  samples.sort((a, b) => a - b);
  return (
    samples[Math.min(samples.length - 1, Math.ceil(samples.length * fraction) - 1)] ?? Number.NaN
  );
}

/** Returns why a 2xx body is not a certificate for the expected tenant and note, or undefined. */
function certificateProblem(body: string, tenantId: string, noteHash: string): string | undefined {
  let parsed: { certificate?: Record<string, unknown> };
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    return 'body is not JSON';
  }
  const certificate = parsed.certificate;
  if (!certificate) {
    return 'body has no certificate';
  }
  if (certificate['tenant_id'] !== tenantId) {
    return `tenant_id is not ${tenantId}`;
  }
  if (certificate['note_hash'] !== noteHash) {
    return 'note_hash does not match the note sent';
  }
  if (!Number.isSafeInteger(certificate['chain_sequence'])) {
    return 'chain_sequence is missing';
  }
  if (typeof certificate['signature'] !== 'string' || certificate['signature'] === '') {
    return 'signature is missing';
  }
  if (typeof certificate['chain_hash'] !== 'string' || certificate['chain_hash'] === '') {
    return 'chain_hash is missing';
  }
  return undefined;
}

/**
 * Compares the certificates counted from responses with the chain heads and row counts in the
 * database. Call it only after the server has stopped. Requests still in flight when a load run
 * ends are completed by the server but their responses are discarded, so the database may hold
 * up to `inFlightLimit` more certificates than were received, and never fewer. Returns a list of
 * mismatches and the number of certificates whose responses were discarded.
 */
interface ChainTotals {
  tenant_id: string;
  chain_sequence: number;
  rows: number;
}

/** Reads each tenant's chain head and row count from whichever engine the server used. */
async function readChainTotals(config: Config): Promise<ChainTotals[]> {
  const sql = `SELECT h.tenant_id AS tenant_id, h.chain_sequence AS chain_sequence,
      (SELECT COUNT(*) FROM certificates c WHERE c.tenant_id = h.tenant_id) AS rows
    FROM chain_heads h`;
  if (config.databaseUrl !== undefined) {
    const client = new pg.Client({ connectionString: config.databaseUrl });
    await client.connect();
    try {
      const result = await client.query<{
        tenant_id: string;
        chain_sequence: string;
        rows: string;
      }>(sql);
      return result.rows.map((row) => ({
        tenant_id: row.tenant_id,
        chain_sequence: Number(row.chain_sequence),
        rows: Number(row.rows),
      }));
    } finally {
      await client.end();
    }
  }
  const db = new Database(config.sqlitePath, { readonly: true });
  try {
    return db.prepare(sql).all() as ChainTotals[];
  } finally {
    db.close();
  }
}

export async function checkChainHeads(
  config: Config,
  issued: IssuedCounts,
  inFlightLimit: number,
): Promise<{ problems: string[]; unacknowledged: number }> {
  const problems: string[] = [];
  let unacknowledged = 0;
  for (const head of await readChainTotals(config)) {
    const received = issued.get(head.tenant_id) ?? 0;
    if (head.rows !== head.chain_sequence || received > head.rows) {
      problems.push(
        `tenant ${head.tenant_id}: ${received} certificates received, chain head ${head.chain_sequence}, ${head.rows} rows`,
      );
    }
    unacknowledged += head.rows - received;
  }
  if (unacknowledged > inFlightLimit) {
    problems.push(
      `${unacknowledged} certificates in the database were never received, more than the ${inFlightLimit} requests that can be in flight when runs end`,
    );
  }
  return { problems, unacknowledged };
}

export function formatCellTable(cells: CellResult[]): string {
  const header = [
    'tenants',
    'conns',
    'certs/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'certs',
    'non-2xx',
    'errors',
    'timeouts',
    'bad 2xx',
  ];
  const rows = cells.map((cell) => [
    String(cell.tenants),
    String(cell.connections),
    cell.certificatesPerSecond.toFixed(0),
    cell.p50Ms.toFixed(1),
    cell.p99Ms.toFixed(1),
    cell.maxMs.toFixed(0),
    String(cell.certificates),
    String(cell.non2xx),
    String(cell.errors),
    String(cell.timeouts),
    String(cell.invalidBodies),
  ]);
  // CPU columns appear only when some cell measured them, so other benchmarks keep their table.
  const micros = (value: number | undefined) => (value === undefined ? '' : value.toFixed(0));
  if (cells.some((cell) => cell.cpuPerCertificateUs !== undefined)) {
    header.push('load', 'server CPU µs', 'PG CPU µs', 'client CPU µs');
    cells.forEach((cell, i) => {
      const cpu = cell.cpuPerCertificateUs;
      rows[i]!.push(
        cell.loadAverage === undefined ? '' : cell.loadAverage.toFixed(1),
        micros(cpu?.server),
        micros(cpu?.database),
        micros(cpu?.loadGenerator),
      );
    });
  }
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => row[i]!.length)),
  );
  const line = (cells: string[]) =>
    '| ' + cells.map((text, i) => text.padStart(widths[i]!)).join(' | ') + ' |';
  return [
    line(header),
    '|' + widths.map((w) => '-'.repeat(w + 1) + ':').join('|') + '|',
    ...rows.map(line),
  ].join('\n');
}

/** Prints the non-2xx statuses, errors and sample bodies of a cell, when there are any. */
export function reportCellProblems(cell: CellResult): void {
  if (cell.non2xx === 0 && cell.errors === 0 && cell.timeouts === 0 && cell.invalidBodies === 0) {
    return;
  }
  console.log(
    `  problems: non-2xx ${cell.non2xx}, errors ${cell.errors}, timeouts ${cell.timeouts}, ` +
      `2xx that are not certificates ${cell.invalidBodies}; status counts ${JSON.stringify(cell.statusCounts)}`,
  );
  for (const sample of cell.samples) {
    console.log(`    ${sample}`);
  }
}

function parseList(text: string, name: string): number[] {
  const values = text.split(',').map(Number);
  if (values.some((value) => !Number.isInteger(value) || value < 1)) {
    throw new Error(`${name} must be a comma-separated list of positive integers, got ${text}`);
  }
  return values;
}

function parsePositive(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number, got ${text}`);
  }
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string', default: '1,16,64' },
      tenants: { type: 'string', default: '1,50' },
      'server-cpu-prof': { type: 'string' },
      workers: { type: 'string', default: '1' },
      'without-merkle-log': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`Usage: node --import tsx bench/issuance.ts [options]
  --duration S           seconds of load per cell (default 10, or 3 with --quick)
  --warmup S             seconds of load before the first cell (default 3, or 1 with --quick)
  --connections N,...    concurrent connections, one cell per value (default 1,16,64)
  --tenants N,...        tenants the requests rotate through, one set of cells per value (default 1,50)
  --workers N            server processes sharing the port (default 1)
  --server-cpu-prof DIR  write a V8 CPU profile of each server process to DIR
  --without-merkle-log   count log leaves instead of appending them (one SQLite server process
                         only), to measure what the Merkle log costs; the data left has no log.
                         The server then appends without its append thread, so run the figure
                         to compare with under CDIL_SQLITE_APPEND_THREAD=false
  --keep                 keep the data folder
The server stores its data in PostgreSQL when DATABASE_URL is set, for example under
scripts/with-postgres.sh, and in a new SQLite file otherwise.`);
    return;
  }
  const seconds = parsePositive(values.duration ?? (values.quick ? '3' : '10'), '--duration');
  const warmupSeconds = parsePositive(values.warmup ?? (values.quick ? '1' : '3'), '--warmup');
  const connectionCounts = parseList(values.connections, '--connections');
  const tenantCounts = parseList(values.tenants, '--tenants');
  const maxTenants = Math.max(...tenantCounts);

  const notes = prepareNotes();
  const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-issue-'));
  const config = loadConfig(benchEnv(dataDir));
  console.log(`machine: ${machineLine()}`);
  console.log(`notes: ${notes.length} bodies, data folder ${dataDir}`);
  console.log(
    `cells: ${seconds} s each after a ${warmupSeconds} s warm-up; tenants ${tenantCounts.join(', ')}; connections ${connectionCounts.join(', ')}`,
  );

  const cpuProfileDir = values['server-cpu-prof'] ? resolve(values['server-cpu-prof']) : undefined;
  const workers = parsePositive(values.workers, '--workers');
  console.log(`server processes: ${workers}`);
  const withoutMerkleLog = values['without-merkle-log'];
  if (withoutMerkleLog && (workers !== 1 || config.databaseUrl !== undefined)) {
    throw new Error('--without-merkle-log needs one server process on SQLite (no DATABASE_URL)');
  }
  console.log(`Merkle log: ${withoutMerkleLog ? 'replaced by a leaf counter' : 'on'}`);
  const server = await startServerProcess(dataDir, cpuProfileDir, workers, withoutMerkleLog);
  const postmasterPid =
    config.databaseUrl === undefined ? undefined : await findLocalPostmaster(config.databaseUrl);
  const issued: IssuedCounts = new Map();
  const cells: CellResult[] = [];
  let inFlightLimit = 0;
  try {
    const tenantIds = Array.from(
      { length: maxTenants },
      (_, i) => `bench-${String(i).padStart(3, '0')}`,
    );
    const allTokens = await provisionTenants(config, server.url, tenantIds);
    console.log(`server ${server.url}, ${allTokens.length} tenants provisioned`);

    const warmup = await runLoadCell({
      url: server.url,
      tokens: allTokens,
      notes,
      connections: 16,
      seconds: warmupSeconds,
      issued,
    });
    inFlightLimit += warmup.connections;
    console.log(`warm-up: ${warmup.certificates} certificates`);
    reportCellProblems(warmup);

    let firstNote = 0;
    for (const tenantCount of tenantCounts) {
      for (const connections of connectionCounts) {
        const cpuBefore = cpuSnapshot(server.child.pid, postmasterPid);
        const cell = await runLoadCell({
          url: server.url,
          tokens: allTokens.slice(0, tenantCount),
          notes,
          connections,
          seconds,
          issued,
          firstNote,
        });
        cell.loadAverage = loadavg()[0];
        cell.cpuPerCertificateUs = cpuPerCertificate(
          cpuBefore,
          cpuSnapshot(server.child.pid, postmasterPid),
          cell.certificates,
        );
        firstNote += cell.certificates + cell.non2xx;
        inFlightLimit += connections;
        cells.push(cell);
        console.log(
          `tenants ${tenantCount}, connections ${connections}: ${cell.certificatesPerSecond.toFixed(0)} certificates/s, ` +
            `p50 ${cell.p50Ms.toFixed(1)} ms, p99 ${cell.p99Ms.toFixed(1)} ms`,
        );
        reportCellProblems(cell);
      }
    }
  } finally {
    await server.stop();
  }
  const { problems, unacknowledged } = await checkChainHeads(config, issued, inFlightLimit);

  console.log('');
  console.log(formatCellTable(cells));
  console.log('');
  const total = [...issued.values()].reduce((sum, n) => sum + n, 0);
  if (problems.length === 0) {
    console.log(
      `database check passed: ${total} certificates received, every one in its tenant's chain; ` +
        `${unacknowledged} more were issued for requests still in flight when a run stopped`,
    );
  } else {
    console.log(`database check FAILED:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  }
  const failed = cells.some(
    (cell) => cell.non2xx + cell.errors + cell.timeouts + cell.invalidBodies > 0,
  );
  if (failed) {
    console.log(
      'some requests failed or returned bodies that are not certificates; see the problems above',
    );
    process.exitCode = 1;
  }
  if (cpuProfileDir) {
    console.log(`server CPU profile written to ${cpuProfileDir}`);
  }
  if (values.keep) {
    console.log(`kept data folder ${dataDir}`);
  } else {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main();
}
