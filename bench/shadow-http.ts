// Measures stateless shadow-mode scoring over HTTP: requests/s and p50/p99 latency of
// POST /v1/shadow/evidence-deficit with real notes. The server runs in a child process
// (`node bin/cdil.mjs serve`) on a throwaway SQLite database, so the load generator does not
// share its event loop. Every 2xx body is checked to start with the SHA-256 of the note sent.
//
// Run: node --import tsx bench/shadow-http.ts [--duration 10] [--connections 16] [--warmup 3]
//        [--workers 1] [--server-cpu-prof DIR]
// Note bodies come from $CDIL_REFERENCE_DATA/mtsamples/notes.jsonl.gz, where
// CDIL_REFERENCE_DATA defaults to ../shared/data relative to the repository root.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { readNotesFile } from '../src/cli/notes-file.ts';
import { loadConfig } from '../src/config/config.ts';
import { sha256Hex } from '../src/core/certificate.ts';
import { nodeCrypto } from '../src/core/crypto-node.ts';
import { signToken } from '../src/server/auth.ts';
import {
  benchEnv,
  corpusPath,
  machineLine,
  percentile,
  provisionTenants,
  startServerProcess,
  type AutocannonRequest,
  type AutocannonResult,
} from './issuance.ts';

const SCORE_PATH = '/v1/shadow/evidence-deficit';
const TENANT = 'bench-shadow';
const TOKEN_TTL_SECONDS = 4 * 3600;

type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  requests: AutocannonRequest[];
}) => Promise<AutocannonResult>;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

interface PreparedNote {
  body: Buffer;
  /** The start every 2xx body must have: the note_hash field with the note's SHA-256. */
  expectedPrefix: string;
}

interface RunResult {
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  ok: number;
  invalidBodies: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  samples: string[];
}

function prepareNotes(): PreparedNote[] {
  return readNotesFile(corpusPath()).map((note) => ({
    body: Buffer.from(JSON.stringify({ note_text: note.text })),
    expectedPrefix: `{"note_hash":"${sha256Hex(nodeCrypto, note.text)}"`,
  }));
}

async function runLoad(options: {
  url: string;
  token: string;
  notes: PreparedNote[];
  connections: number;
  seconds: number;
}): Promise<RunResult> {
  const { notes } = options;
  const authorization = `Bearer ${options.token}`;
  let counter = 0;
  let ok = 0;
  let invalidBodies = 0;
  const latencies: number[] = [];
  const samples: string[] = [];
  const request: AutocannonRequest = {
    method: 'POST',
    path: SCORE_PATH,
    setupRequest: (current, context) => {
      const note = notes[counter++ % notes.length]!;
      context['expectedPrefix'] = note.expectedPrefix;
      // autocannon 8 calls setupRequest right before writing the request, except for a
      // connection's first request, which is built earlier; those few samples read high.
      context['sentAt'] = performance.now();
      return {
        ...current,
        headers: { 'content-type': 'application/json', authorization },
        body: note.body,
      };
    },
    onResponse: (status, body, context) => {
      latencies.push(performance.now() - (context['sentAt'] as number));
      if (status < 200 || status > 299 || !body.startsWith(context['expectedPrefix'] as string)) {
        if (status >= 200 && status <= 299) {
          invalidBodies++;
        }
        if (samples.length < 5) {
          samples.push(`status ${status}: ${body.slice(0, 200)}`);
        }
        return;
      }
      ok++;
    },
  };
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.seconds,
    requests: [request],
  });
  return {
    seconds: result.duration,
    requestsPerSecond: ok / result.duration,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    maxMs: percentile(latencies, 1),
    ok,
    invalidBodies,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    samples,
  };
}

function positive(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number, got ${text}`);
  }
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      connections: { type: 'string', default: '16' },
      workers: { type: 'string', default: '1' },
      'server-cpu-prof': { type: 'string' },
    },
  });
  const seconds = positive(values.duration, '--duration');
  const warmupSeconds = positive(values.warmup, '--warmup');
  const connections = positive(values.connections, '--connections');
  const workers = positive(values.workers, '--workers');

  const notes = prepareNotes();
  const meanBytes = notes.reduce((sum, note) => sum + note.body.length, 0) / notes.length;
  const dataDir = mkdtempSync(join(tmpdir(), 'cdil-bench-shadow-'));
  const config = loadConfig(benchEnv(dataDir));
  console.log(`machine: ${machineLine()}`);
  console.log(`notes: ${notes.length} bodies, mean ${(meanBytes / 1024).toFixed(1)} KB`);
  console.log(
    `load: ${connections} connections, ${seconds} s after a ${warmupSeconds} s warm-up, server processes ${workers}`,
  );
  const cpuProfileDir = values['server-cpu-prof'];
  const server = await startServerProcess(
    dataDir,
    cpuProfileDir === undefined ? undefined : resolve(cpuProfileDir),
    workers,
  );
  let measured: RunResult;
  try {
    await provisionTenants(config, server.url, [TENANT]);
    const token = await signToken(
      { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience },
      {
        subject: 'bench-analyst',
        roles: ['analyst'],
        tenantId: TENANT,
        ttlSeconds: TOKEN_TTL_SECONDS,
      },
    );
    const warmup = await runLoad({
      url: server.url,
      token,
      notes,
      connections,
      seconds: warmupSeconds,
    });
    console.log(`warm-up: ${warmup.ok} scored notes`);
    measured = await runLoad({ url: server.url, token, notes, connections, seconds });
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  console.log('');
  console.log(
    `${measured.requestsPerSecond.toFixed(0)} requests/s, p50 ${measured.p50Ms.toFixed(1)} ms, ` +
      `p99 ${measured.p99Ms.toFixed(1)} ms, max ${measured.maxMs.toFixed(0)} ms; ` +
      `${measured.ok} scored notes in ${measured.seconds} s`,
  );
  const problems = measured.non2xx + measured.errors + measured.timeouts + measured.invalidBodies;
  if (problems > 0) {
    console.log(
      `problems: non-2xx ${measured.non2xx}, errors ${measured.errors}, timeouts ${measured.timeouts}, ` +
        `2xx bodies for another note ${measured.invalidBodies}`,
    );
    for (const sample of measured.samples) {
      console.log(`  ${sample}`);
    }
    process.exitCode = 1;
  }
}

await main();
