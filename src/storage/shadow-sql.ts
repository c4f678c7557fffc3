// Shadow-mode SQL shared by the SQLite and PostgreSQL engines. Queries use `?` placeholders
// and no engine-specific syntax. The PostgreSQL engine numbers the placeholders before it
// sends a query. Each engine runs the queries and passes the raw rows back here to be shaped.
import type {
  ShadowAggregate,
  ShadowConditionRow,
  ShadowElement,
  ShadowItemCursor,
  ShadowItemFilter,
  ShadowItemOrder,
  ShadowItemRow,
  ShadowSource,
} from './store.ts';

export const ELEMENTS: readonly ShadowElement[] = ['monitor', 'evaluate', 'assess', 'treat'];

export type SqlParam = string | number | null;

export interface Query {
  sql: string;
  params: SqlParam[];
}

export const INSERT_ITEM_SQL = `INSERT INTO shadow_items (tenant_id, item_id, created_at, source, batch_id, note_hash, note_ref_hash,
         certificate_id, certificate_note_match, ruleset_version, context_rules_version, assumptions_revision,
         conditions_counted, mean_completeness, estimated_value_at_risk_usd, has_deficit, result_json)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Converts a boolean to the 0 or 1 stored in INTEGER columns, keeping null. */
function toFlag(value: boolean | null): number | null {
  if (value === null) {
    return null;
  }
  return value ? 1 : 0;
}

/** Returns the parameters of INSERT_ITEM_SQL, with booleans as 0 and 1. */
export function itemParams(item: ShadowItemRow): SqlParam[] {
  return [
    item.tenant_id,
    item.item_id,
    item.created_at,
    item.source,
    item.batch_id,
    item.note_hash,
    item.note_ref_hash,
    item.certificate_id,
    toFlag(item.certificate_note_match),
    item.ruleset_version,
    item.context_rules_version,
    item.assumptions_revision,
    item.conditions_counted,
    item.mean_completeness,
    item.estimated_value_at_risk_usd,
    item.has_deficit ? 1 : 0,
    item.result_json,
  ];
}

export const INSERT_CONDITION_SQL = `INSERT INTO shadow_item_conditions (tenant_id, item_id, condition_id, counted, mentioned, completeness,
         monitor_met, evaluate_met, assess_met, treat_met, estimated_value_at_risk_usd)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Returns the parameters of INSERT_CONDITION_SQL, with booleans as 0 and 1. */
export function conditionParams(
  tenantId: string,
  itemId: string,
  condition: ShadowConditionRow,
): SqlParam[] {
  return [
    tenantId,
    itemId,
    condition.condition_id,
    condition.counted ? 1 : 0,
    condition.mentioned ? 1 : 0,
    condition.completeness,
    ...ELEMENTS.map((element) => (condition.met[element] ? 1 : 0)),
    condition.estimated_value_at_risk_usd,
  ];
}

export const INSERT_GAP_SQL =
  'INSERT INTO shadow_item_gaps (tenant_id, item_id, condition_id, element, attributed_cents) VALUES (?, ?, ?, ?, ?)';

export const INSERT_FINDING_SQL =
  'INSERT INTO shadow_item_findings (tenant_id, item_id, position, rule_id, kind) VALUES (?, ?, ?, ?, ?)';

export interface RawItem extends Omit<ShadowItemRow, 'certificate_note_match' | 'has_deficit'> {
  certificate_note_match: number | null;
  has_deficit: number;
}

export function toItem(raw: RawItem): ShadowItemRow {
  return {
    ...raw,
    certificate_note_match:
      raw.certificate_note_match === null ? null : raw.certificate_note_match === 1,
    has_deficit: raw.has_deficit === 1,
    assumptions_revision: Number(raw.assumptions_revision),
    conditions_counted: Number(raw.conditions_counted),
    estimated_value_at_risk_usd: Number(raw.estimated_value_at_risk_usd),
  };
}

/** Builds the WHERE clauses of a filter on shadow_items aliased as `i`. */
export function filterClauses(
  tenantId: string,
  filter: ShadowItemFilter,
): { clauses: string[]; params: (string | number)[] } {
  const clauses = ['i.tenant_id = ?'];
  const params: (string | number)[] = [tenantId];
  if (filter.createdFrom !== undefined) {
    clauses.push('i.created_at >= ?');
    params.push(filter.createdFrom);
  }
  if (filter.createdTo !== undefined) {
    clauses.push('i.created_at < ?');
    params.push(filter.createdTo);
  }
  if (filter.hasDeficit !== undefined) {
    clauses.push('i.has_deficit = ?');
    params.push(filter.hasDeficit ? 1 : 0);
  }
  if (filter.source !== undefined) {
    clauses.push('i.source = ?');
    params.push(filter.source);
  }
  if (filter.batchId !== undefined) {
    clauses.push('i.batch_id = ?');
    params.push(filter.batchId);
  }
  if (filter.certificateId !== undefined) {
    clauses.push('i.certificate_id = ?');
    params.push(filter.certificateId);
  }
  if (filter.conditionId !== undefined) {
    clauses.push(
      'EXISTS (SELECT 1 FROM shadow_item_conditions c WHERE c.tenant_id = i.tenant_id AND c.item_id = i.item_id AND c.condition_id = ? AND c.counted = 1)',
    );
    params.push(filter.conditionId);
  }
  return { clauses, params };
}

/** Builds the page query of ShadowStore.listShadowItems. */
export function listItemsQuery(
  tenantId: string,
  filter: ShadowItemFilter,
  order: ShadowItemOrder,
  cursor: ShadowItemCursor | undefined,
  limit: number,
): Query {
  const { clauses, params } = filterClauses(tenantId, filter);
  let orderBy = 'i.created_at DESC, i.item_id DESC';
  if (order === 'risk') {
    clauses.push('i.estimated_value_at_risk_usd > 0');
    orderBy = 'i.estimated_value_at_risk_usd DESC, ' + orderBy;
    if (cursor !== undefined) {
      const value = cursor.valueAtRisk ?? 0;
      clauses.push(
        '(i.estimated_value_at_risk_usd < ? OR (i.estimated_value_at_risk_usd = ? AND (i.created_at < ? OR (i.created_at = ? AND i.item_id < ?))))',
      );
      params.push(value, value, cursor.createdAt, cursor.createdAt, cursor.itemId);
    }
  } else if (cursor !== undefined) {
    clauses.push('(i.created_at < ? OR (i.created_at = ? AND i.item_id < ?))');
    params.push(cursor.createdAt, cursor.createdAt, cursor.itemId);
  }
  params.push(limit);
  return {
    sql: `SELECT i.* FROM shadow_items i WHERE ${clauses.join(' AND ')} ORDER BY ${orderBy} LIMIT ?`,
    params,
  };
}

/** The queries whose rows assembleAggregate combines; run them in one read transaction. */
export interface AggregateQueries {
  totals: Query;
  sources: Query;
  conditions: Query;
  gaps: Query;
  findings: Query;
  revisions: Query;
}

export interface AggregateRows {
  totals: Record<string, number | string | null>;
  sources: { source: ShadowSource; n: number | string }[];
  conditions: Record<string, number | string>[];
  gaps: {
    condition_id: string;
    element: ShadowElement;
    items: number | string;
    cents: number | string;
  }[];
  findings: { rule_id: string; kind: string; items: number | string }[];
  revisions: { revision: number | string; items: number | string }[];
}

/** Builds the queries of ShadowStore.aggregateShadowItems over the created_at range of `filter`. */
export function aggregateQueries(tenantId: string, filter: ShadowItemFilter): AggregateQueries {
  const range: ShadowItemFilter = {
    createdFrom: filter.createdFrom,
    createdTo: filter.createdTo,
  };
  const { clauses, params } = filterClauses(tenantId, range);
  const where = clauses.join(' AND ');
  const items = `SELECT i.item_id FROM shadow_items i WHERE ${where}`;
  return {
    totals: {
      sql: `SELECT COUNT(*) AS items,
             SUM(CASE WHEN i.conditions_counted > 0 THEN 1 ELSE 0 END) AS with_counted,
             SUM(i.has_deficit) AS with_deficit,
             SUM(i.estimated_value_at_risk_usd) AS value,
             SUM(CASE WHEN i.certificate_id IS NOT NULL THEN 1 ELSE 0 END) AS linked,
             COUNT(DISTINCT i.certificate_id) AS certificates,
             SUM(CASE WHEN i.certificate_note_match = 1 THEN 1 ELSE 0 END) AS matches
           FROM shadow_items i WHERE ${where}`,
      params,
    },
    sources: {
      sql: `SELECT i.source, COUNT(*) AS n FROM shadow_items i WHERE ${where} GROUP BY i.source`,
      params,
    },
    conditions: {
      sql: `SELECT c.condition_id,
             SUM(c.mentioned) AS mentioned,
             SUM(c.counted) AS counted,
             SUM(CASE WHEN c.counted = 1 THEN c.completeness ELSE 0 END) AS completeness_sum,
             SUM(c.monitor_met) AS monitor_met,
             SUM(c.evaluate_met) AS evaluate_met,
             SUM(c.assess_met) AS assess_met,
             SUM(c.treat_met) AS treat_met,
             SUM(CASE WHEN c.counted = 1 AND c.monitor_met + c.evaluate_met + c.assess_met + c.treat_met = 4 THEN 1 ELSE 0 END) AS full_support,
             SUM(c.estimated_value_at_risk_usd) AS value
           FROM shadow_item_conditions c
           WHERE c.tenant_id = ? AND c.item_id IN (${items})
           GROUP BY c.condition_id ORDER BY c.condition_id`,
      params: [tenantId, ...params],
    },
    gaps: {
      sql: `SELECT g.condition_id, g.element, COUNT(*) AS items, SUM(g.attributed_cents) AS cents
           FROM shadow_item_gaps g
           WHERE g.tenant_id = ? AND g.item_id IN (${items})
           GROUP BY g.condition_id, g.element ORDER BY g.condition_id, g.element`,
      params: [tenantId, ...params],
    },
    findings: {
      sql: `SELECT f.rule_id, f.kind, COUNT(DISTINCT f.item_id) AS items
           FROM shadow_item_findings f
           WHERE f.tenant_id = ? AND f.item_id IN (${items})
           GROUP BY f.rule_id, f.kind ORDER BY f.rule_id, f.kind`,
      params: [tenantId, ...params],
    },
    revisions: {
      sql: `SELECT i.assumptions_revision AS revision, COUNT(*) AS items FROM shadow_items i
           WHERE ${where} GROUP BY i.assumptions_revision ORDER BY i.assumptions_revision`,
      params,
    },
  };
}

/** Combines the rows of aggregateQueries into the ShadowAggregate the services use. */
export function assembleAggregate(rows: AggregateRows): ShadowAggregate {
  const { totals, sources, conditions, gaps, findings, revisions } = rows;
  const met = { monitor: 0, evaluate: 0, assess: 0, treat: 0 };
  let instances = 0;
  let completenessSum = 0;
  const conditionAggregates = conditions.map((row) => {
    const conditionMet = {
      monitor: Number(row.monitor_met),
      evaluate: Number(row.evaluate_met),
      assess: Number(row.assess_met),
      treat: Number(row.treat_met),
    };
    for (const element of ELEMENTS) {
      met[element] += conditionMet[element];
    }
    instances += Number(row.counted);
    completenessSum += Number(row.completeness_sum);
    return {
      condition_id: String(row.condition_id),
      items_mentioned: Number(row.mentioned),
      items_counted: Number(row.counted),
      completeness_sum: Number(row.completeness_sum),
      met: conditionMet,
      fully_supported: Number(row.full_support),
      estimated_value_at_risk_usd: Number(row.value),
    };
  });
  const bySource = { intake: 0, analyze: 0 };
  for (const row of sources) {
    bySource[row.source] = Number(row.n);
  }
  return {
    items: Number(totals.items ?? 0),
    items_by_source: bySource,
    items_with_counted_condition: Number(totals.with_counted ?? 0),
    items_with_deficit: Number(totals.with_deficit ?? 0),
    counted_condition_instances: instances,
    completeness_sum: completenessSum,
    met,
    estimated_value_at_risk_usd: Number(totals.value ?? 0),
    linked_items: Number(totals.linked ?? 0),
    linked_certificates: Number(totals.certificates ?? 0),
    linked_note_matches: Number(totals.matches ?? 0),
    conditions: conditionAggregates,
    gaps: gaps.map((row) => ({
      condition_id: row.condition_id,
      element: row.element,
      items: Number(row.items),
      attributed_cents: Number(row.cents),
    })),
    findings: findings.map((row) => ({ ...row, items: Number(row.items) })),
    assumptions_revisions: revisions.map((row) => ({
      revision: Number(row.revision),
      items: Number(row.items),
    })),
  };
}

/** Builds the query of ShadowStore.listLinkedCertificateIds. */
export function linkedCertificateIdsQuery(
  tenantId: string,
  filter: ShadowItemFilter,
  limit: number,
): Query {
  const range: ShadowItemFilter = {
    createdFrom: filter.createdFrom,
    createdTo: filter.createdTo,
  };
  const { clauses, params } = filterClauses(tenantId, range);
  clauses.push('i.certificate_id IS NOT NULL');
  return {
    sql: `SELECT i.certificate_id, MAX(i.created_at) AS last_linked FROM shadow_items i
         WHERE ${clauses.join(' AND ')}
         GROUP BY i.certificate_id ORDER BY last_linked DESC, i.certificate_id LIMIT ?`,
    params: [...params, limit],
  };
}
