// SQLite statements for the shadow-mode tables. SqliteStore delegates its ShadowStore methods
// here. The SQL avoids SQLite-only syntax so that a PostgreSQL engine can reuse it with
// numbered parameters.
import type Database from 'better-sqlite3';
import type {
  NewShadowItem,
  ShadowAggregate,
  ShadowAssumptionsRow,
  ShadowElement,
  ShadowItemCursor,
  ShadowItemFilter,
  ShadowItemOrder,
  ShadowItemRow,
  ShadowSource,
} from '../store.ts';

const ELEMENTS: readonly ShadowElement[] = ['monitor', 'evaluate', 'assess', 'treat'];

interface RawItem extends Omit<ShadowItemRow, 'certificate_note_match' | 'has_deficit'> {
  certificate_note_match: number | null;
  has_deficit: number;
}

function toItem(raw: RawItem): ShadowItemRow {
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

function toFlag(value: boolean | null): number | null {
  if (value === null) {
    return null;
  }
  return value ? 1 : 0;
}

/** Builds the WHERE clauses of a filter on shadow_items aliased as `i`. */
function filterClauses(
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

export class SqliteShadowTables {
  readonly #db: Database.Database;
  #getAssumptions: Database.Statement | undefined;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  insert(items: NewShadowItem[]): void {
    const db = this.#db;
    const insertItem = db.prepare(
      `INSERT INTO shadow_items (tenant_id, item_id, created_at, source, batch_id, note_hash, note_ref_hash,
         certificate_id, certificate_note_match, ruleset_version, context_rules_version, assumptions_revision,
         conditions_counted, mean_completeness, estimated_value_at_risk_usd, has_deficit, result_json)
       VALUES (@tenant_id, @item_id, @created_at, @source, @batch_id, @note_hash, @note_ref_hash,
         @certificate_id, @certificate_note_match, @ruleset_version, @context_rules_version, @assumptions_revision,
         @conditions_counted, @mean_completeness, @estimated_value_at_risk_usd, @has_deficit, @result_json)`,
    );
    const insertCondition = db.prepare(
      `INSERT INTO shadow_item_conditions (tenant_id, item_id, condition_id, counted, mentioned, completeness,
         monitor_met, evaluate_met, assess_met, treat_met, estimated_value_at_risk_usd)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insertGap = db.prepare(
      'INSERT INTO shadow_item_gaps (tenant_id, item_id, condition_id, element, attributed_cents) VALUES (?, ?, ?, ?, ?)',
    );
    const insertFinding = db.prepare(
      'INSERT INTO shadow_item_findings (tenant_id, item_id, position, rule_id, kind) VALUES (?, ?, ?, ?, ?)',
    );
    const run = db.transaction(() => {
      for (const { item, conditions, gaps, findings } of items) {
        insertItem.run({
          ...item,
          certificate_note_match: toFlag(item.certificate_note_match),
          has_deficit: item.has_deficit ? 1 : 0,
        });
        for (const condition of conditions) {
          insertCondition.run(
            item.tenant_id,
            item.item_id,
            condition.condition_id,
            condition.counted ? 1 : 0,
            condition.mentioned ? 1 : 0,
            condition.completeness,
            ...ELEMENTS.map((element) => (condition.met[element] ? 1 : 0)),
            condition.estimated_value_at_risk_usd,
          );
        }
        for (const gap of gaps) {
          insertGap.run(
            item.tenant_id,
            item.item_id,
            gap.condition_id,
            gap.element,
            gap.attributed_cents,
          );
        }
        findings.forEach((finding, position) => {
          insertFinding.run(item.tenant_id, item.item_id, position, finding.rule_id, finding.kind);
        });
      }
    });
    run.immediate();
  }

  get(tenantId: string, itemId: string): ShadowItemRow | undefined {
    const raw = this.#db
      .prepare('SELECT * FROM shadow_items WHERE tenant_id = ? AND item_id = ?')
      .get(tenantId, itemId) as RawItem | undefined;
    return raw ? toItem(raw) : undefined;
  }

  list(
    tenantId: string,
    filter: ShadowItemFilter,
    order: ShadowItemOrder,
    cursor: ShadowItemCursor | undefined,
    limit: number,
  ): ShadowItemRow[] {
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
    const rows = this.#db
      .prepare(
        `SELECT i.* FROM shadow_items i WHERE ${clauses.join(' AND ')} ORDER BY ${orderBy} LIMIT ?`,
      )
      .all(...params) as RawItem[];
    return rows.map(toItem);
  }

  aggregate(tenantId: string, filter: ShadowItemFilter): ShadowAggregate {
    const db = this.#db;
    const range: ShadowItemFilter = {
      createdFrom: filter.createdFrom,
      createdTo: filter.createdTo,
    };
    const { clauses, params } = filterClauses(tenantId, range);
    const where = clauses.join(' AND ');
    const items = `SELECT i.item_id FROM shadow_items i WHERE ${where}`;
    const read = db.transaction((): ShadowAggregate => {
      const totals = db
        .prepare(
          `SELECT COUNT(*) AS items,
             SUM(CASE WHEN i.conditions_counted > 0 THEN 1 ELSE 0 END) AS with_counted,
             SUM(i.has_deficit) AS with_deficit,
             SUM(i.estimated_value_at_risk_usd) AS value,
             SUM(CASE WHEN i.certificate_id IS NOT NULL THEN 1 ELSE 0 END) AS linked,
             COUNT(DISTINCT i.certificate_id) AS certificates,
             SUM(CASE WHEN i.certificate_note_match = 1 THEN 1 ELSE 0 END) AS matches
           FROM shadow_items i WHERE ${where}`,
        )
        .get(...params) as Record<string, number | null>;
      const sources = db
        .prepare(
          `SELECT i.source, COUNT(*) AS n FROM shadow_items i WHERE ${where} GROUP BY i.source`,
        )
        .all(...params) as { source: ShadowSource; n: number }[];
      const conditions = db
        .prepare(
          `SELECT c.condition_id,
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
        )
        .all(tenantId, ...params) as Record<string, number | string>[];
      const gaps = db
        .prepare(
          `SELECT g.condition_id, g.element, COUNT(*) AS items, SUM(g.attributed_cents) AS cents
           FROM shadow_item_gaps g
           WHERE g.tenant_id = ? AND g.item_id IN (${items})
           GROUP BY g.condition_id, g.element ORDER BY g.condition_id, g.element`,
        )
        .all(tenantId, ...params) as {
        condition_id: string;
        element: ShadowElement;
        items: number;
        cents: number;
      }[];
      const findings = db
        .prepare(
          `SELECT f.rule_id, f.kind, COUNT(DISTINCT f.item_id) AS items
           FROM shadow_item_findings f
           WHERE f.tenant_id = ? AND f.item_id IN (${items})
           GROUP BY f.rule_id, f.kind ORDER BY f.rule_id, f.kind`,
        )
        .all(tenantId, ...params) as { rule_id: string; kind: string; items: number }[];
      const revisions = db
        .prepare(
          `SELECT i.assumptions_revision AS revision, COUNT(*) AS items FROM shadow_items i
           WHERE ${where} GROUP BY i.assumptions_revision ORDER BY i.assumptions_revision`,
        )
        .all(...params) as { revision: number; items: number }[];

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
    });
    return read();
  }

  linkedCertificateIds(tenantId: string, filter: ShadowItemFilter, limit: number): string[] {
    const range: ShadowItemFilter = {
      createdFrom: filter.createdFrom,
      createdTo: filter.createdTo,
    };
    const { clauses, params } = filterClauses(tenantId, range);
    clauses.push('i.certificate_id IS NOT NULL');
    const rows = this.#db
      .prepare(
        `SELECT i.certificate_id, MAX(i.created_at) AS last_linked FROM shadow_items i
         WHERE ${clauses.join(' AND ')}
         GROUP BY i.certificate_id ORDER BY last_linked DESC, i.certificate_id LIMIT ?`,
      )
      .all(...params, limit) as { certificate_id: string }[];
    return rows.map((row) => row.certificate_id);
  }

  getAssumptions(tenantId: string): ShadowAssumptionsRow | undefined {
    // Prepared on first use, after migrations, and kept: scoring requests read it every time.
    this.#getAssumptions ??= this.#db.prepare(
      'SELECT * FROM shadow_assumptions WHERE tenant_id = ?',
    );
    const row = this.#getAssumptions.get(tenantId) as ShadowAssumptionsRow | undefined;
    return row ? { ...row, revision: Number(row.revision) } : undefined;
  }

  putAssumptions(
    tenantId: string,
    assumptionsJson: string,
    updatedAt: string,
  ): ShadowAssumptionsRow {
    const db = this.#db;
    const put = db.transaction((): ShadowAssumptionsRow => {
      const current = db
        .prepare('SELECT revision FROM shadow_assumptions WHERE tenant_id = ?')
        .get(tenantId) as { revision: number } | undefined;
      const revision = Number(current?.revision ?? 0) + 1;
      db.prepare(
        `INSERT INTO shadow_assumptions (tenant_id, revision, assumptions_json, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (tenant_id) DO UPDATE SET revision = excluded.revision,
           assumptions_json = excluded.assumptions_json, updated_at = excluded.updated_at`,
      ).run(tenantId, revision, assumptionsJson, updatedAt);
      return {
        tenant_id: tenantId,
        revision,
        assumptions_json: assumptionsJson,
        updated_at: updatedAt,
      };
    });
    return put.immediate();
  }
}
