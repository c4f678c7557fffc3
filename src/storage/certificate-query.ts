// The certificate query both engines run, built once so their filters cannot drift apart.
// Placeholders are `?`, and the PostgreSQL engine renumbers them.
import type { SqlParam } from './shadow-sql.ts';
import type { CertificateFilter } from './store.ts';

export function certificateQuery(
  tenantId: string,
  filter: CertificateFilter,
  afterSequence: number,
  limit: number,
): { sql: string; params: SqlParam[] } {
  const clauses = ['tenant_id = ?', 'chain_sequence > ?'];
  const params: SqlParam[] = [tenantId, afterSequence];
  if (filter.issuedFrom !== undefined) {
    clauses.push('issued_at_utc >= ?');
    params.push(filter.issuedFrom);
  }
  if (filter.issuedTo !== undefined) {
    clauses.push('issued_at_utc < ?');
    params.push(filter.issuedTo);
  }
  if (filter.modelVersion !== undefined) {
    clauses.push('model_version = ?');
    params.push(filter.modelVersion);
  }
  if (filter.governancePolicyVersion !== undefined) {
    clauses.push('governance_policy_version = ?');
    params.push(filter.governancePolicyVersion);
  }
  if (filter.humanReviewed !== undefined) {
    clauses.push('human_reviewed = ?');
    params.push(filter.humanReviewed ? 1 : 0);
  }
  params.push(limit);
  return {
    sql: `SELECT * FROM certificates WHERE ${clauses.join(' AND ')} ORDER BY chain_sequence LIMIT ?`,
    params,
  };
}
