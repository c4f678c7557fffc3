// Walks a tenant's chain from the first entry and checks every link and signature.
import assert from 'node:assert/strict';
import type { Services } from '../../src/services/container.ts';

/** Returns the certificate ids in chain order after checking links, uniqueness and validity. */
export async function walkChain(services: Services, tenant: string): Promise<string[]> {
  const ids: string[] = [];
  let previous: string | null = null;
  for (let sequence = 1; ; sequence++) {
    const row = await services.store.getCertificateBySequence(tenant, sequence);
    if (!row) {
      break;
    }
    assert.equal(row.previous_hash, previous, `${tenant} link at ${sequence}`);
    assert.ok(!ids.includes(row.certificate_id), `${tenant} duplicate at ${sequence}`);
    ids.push(row.certificate_id);
    previous = row.chain_hash;
    const report = await services.certificates.verify(tenant, row.certificate_id);
    assert.equal(report.valid, true, `${tenant} ${sequence}: ${report.summary}`);
  }
  return ids;
}
