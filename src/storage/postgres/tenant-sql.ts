// Statements of an append that select chain or log heads by tenant come in two texts that take
// the same values: `$1` is the array of tenant ids. With several tenants the text matches
// `tenant_id = ANY($1::text[])`. With one tenant it compares with `($1::text[])[1]` instead,
// because PostgreSQL 15 plans a prepared `= ANY($1)` statement again on every execution when
// the array has one element: its generic plan, which assumes 10 elements, never costs less than
// the custom plan. In bench/append.ts (one tenant, batch 1) that replanning raised PostgreSQL CPU
// per transaction from about 450 to about 740 µs. `= ($1::text[])[1]` keeps one generic plan.
import type pg from 'pg';

/** The two texts of one statement, each with the name it is prepared under. */
export interface TenantStatement {
  single: { name: string; text: string };
  several: { name: string; text: string };
}

/** Returns the query for `tenantCount` tenants, with the text that fits that count. */
export function tenantQuery(
  statement: TenantStatement,
  tenantCount: number,
  values: unknown[],
): pg.QueryConfig {
  const chosen = tenantCount === 1 ? statement.single : statement.several;
  return { ...chosen, values };
}
