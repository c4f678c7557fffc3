// SQLite statements for the shadow-mode tables. SqliteStore delegates its ShadowStore methods
// here. The SQL itself is in ../shadow-sql.ts, shared with the PostgreSQL engine.
import type Database from 'better-sqlite3';
import {
  INSERT_CONDITION_SQL,
  INSERT_FINDING_SQL,
  INSERT_GAP_SQL,
  INSERT_ITEM_SQL,
  aggregateQueries,
  assembleAggregate,
  conditionParams,
  itemParams,
  linkedCertificateIdsQuery,
  listItemsQuery,
  toItem,
  type AggregateRows,
  type Query,
  type RawItem,
} from '../shadow-sql.ts';
import type {
  NewShadowItem,
  ShadowAggregate,
  ShadowAssumptionsRow,
  ShadowItemCursor,
  ShadowItemFilter,
  ShadowItemOrder,
  ShadowItemRow,
} from '../store.ts';

export class SqliteShadowTables {
  readonly #db: Database.Database;
  #getAssumptions: Database.Statement | undefined;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  insert(items: NewShadowItem[]): void {
    const db = this.#db;
    const insertItem = db.prepare(INSERT_ITEM_SQL);
    const insertCondition = db.prepare(INSERT_CONDITION_SQL);
    const insertGap = db.prepare(INSERT_GAP_SQL);
    const insertFinding = db.prepare(INSERT_FINDING_SQL);
    const run = db.transaction(() => {
      for (const { item, conditions, gaps, findings } of items) {
        insertItem.run(...itemParams(item));
        for (const condition of conditions) {
          insertCondition.run(...conditionParams(item.tenant_id, item.item_id, condition));
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
    const { sql, params } = listItemsQuery(tenantId, filter, order, cursor, limit);
    const rows = this.#db.prepare(sql).all(...params) as RawItem[];
    return rows.map(toItem);
  }

  aggregate(tenantId: string, filter: ShadowItemFilter): ShadowAggregate {
    const db = this.#db;
    const queries = aggregateQueries(tenantId, filter);
    const all = (query: Query): unknown[] => db.prepare(query.sql).all(...query.params);
    const read = db.transaction((): ShadowAggregate => {
      const rows = {
        totals: db.prepare(queries.totals.sql).get(...queries.totals.params),
        sources: all(queries.sources),
        conditions: all(queries.conditions),
        gaps: all(queries.gaps),
        findings: all(queries.findings),
        revisions: all(queries.revisions),
      } as AggregateRows;
      return assembleAggregate(rows);
    });
    return read();
  }

  linkedCertificateIds(tenantId: string, filter: ShadowItemFilter, limit: number): string[] {
    const { sql, params } = linkedCertificateIdsQuery(tenantId, filter, limit);
    const rows = this.#db.prepare(sql).all(...params) as { certificate_id: string }[];
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
