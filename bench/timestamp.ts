// Measures offline verification of one RFC 3161 timestamp token, issued by a local openssl TSA
// (EC P-256, token of about 1.4 KB with the TSA and root certificates), in one thread. The
// "cold" mode runs every check on each call because its cache is off. The "cached" mode
// verifies the same token and roots again, so it costs a cache lookup and the imprint and
// genTime checks.
//
// Run: node --import tsx bench/timestamp.ts [--seconds 3]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';

import { TimestampVerifier } from '../src/core/timestamp/verify.ts';
import { startLocalTsa, TSA_POLICY } from '../test/helpers/tsa.ts';
import { machineLine } from './issuance.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } });
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds <= 0) {
  throw new Error(`--seconds must be a positive number, got ${values.seconds}`);
}

interface Timing {
  perSecond: number;
  wallMicroseconds: number;
  cpuMicroseconds: number;
  count: number;
}

/** Runs `verifyOnce` back to back for `durationSeconds` and reports rate and cost per call. */
async function timeVerifications(
  durationSeconds: number,
  verifyOnce: () => Promise<void>,
): Promise<Timing> {
  let count = 0;
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  const deadline = started + durationSeconds * 1000;
  while (performance.now() < deadline) {
    await verifyOnce();
    count++;
  }
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuStart);
  return {
    perSecond: (count * 1000) / elapsedMs,
    wallMicroseconds: (elapsedMs * 1000) / count,
    cpuMicroseconds: (cpu.user + cpu.system) / count,
    count,
  };
}

const tsa = await startLocalTsa();
try {
  const data = new TextEncoder().encode(
    'checkpoint tenant=bench size=1000 root=' + 'ab'.repeat(32),
  );
  const { token } = await tsa.issue(data);
  const options = { data, trustedRoots: tsa.rootPem };
  const modes: [string, TimestampVerifier][] = [
    ['cold (cache off)', new TimestampVerifier({ cacheSize: 0 })],
    ['cached (same token and roots)', new TimestampVerifier()],
  ];

  console.log(`machine: ${machineLine()}`);
  console.log(`1-minute load average at start: ${loadavg()[0]!.toFixed(2)}`);
  console.log(`token: ${token.length} bytes; ${seconds} s per mode after a 0.5 s warm-up`);
  console.log('');
  console.log('| mode | verifications/s | µs per call (wall) | µs per call (CPU) | calls |');
  console.log('|---|---:|---:|---:|---:|');
  for (const [name, verifier] of modes) {
    const verifyOnce = async () => {
      const info = await verifier.verify(token, options);
      if (info.policy !== TSA_POLICY) {
        throw new Error(`verified token has policy ${info.policy}, expected ${TSA_POLICY}`);
      }
    };
    await timeVerifications(0.5, verifyOnce);
    const timing = await timeVerifications(seconds, verifyOnce);
    console.log(
      `| ${name} | ${timing.perSecond.toFixed(0)} | ${timing.wallMicroseconds.toFixed(0)} | ` +
        `${timing.cpuMicroseconds.toFixed(0)} | ${timing.count} |`,
    );
  }
  console.log(`\n1-minute load average at end: ${loadavg()[0]!.toFixed(2)}`);
} finally {
  await tsa.close();
}
