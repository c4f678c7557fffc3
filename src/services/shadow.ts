// Shadow-mode scoring as a tenant service: stateless scoring of one note, batch analysis,
// leakage reports, intake of single notes, and reading stored items. Note text is scored in
// memory and only its SHA-256 is kept. Client note references are kept as keyed hashes, and
// results are stored and returned without text copied from the note (spans locate matches).
import { randomUUID } from 'node:crypto';
import { sha256Hex } from '../core/certificate.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { scoreNote } from '../scoring/engine.ts';
import {
  LeakageAggregator,
  attributeNoteLeakage,
  centsToUsd,
  type LeakageReport,
  type NoteAttribution,
} from '../scoring/leakage.ts';
import { CorpusAggregator, type CorpusReport } from '../scoring/report.ts';
import type { CompiledRuleset, MeatElement } from '../scoring/ruleset.ts';
import type { EncounterContext, ScoreResult } from '../scoring/types.ts';
import {
  applyValueAssumptions,
  redactResult,
  type RedactedScoreResult,
} from '../scoring/valuation.ts';
import type {
  NewShadowItem,
  ShadowItemCursor,
  ShadowItemFilter,
  ShadowItemOrder,
  ShadowItemRow,
  ShadowSource,
  Store,
} from '../storage/store.ts';
import type { CertificateService } from './certificates.ts';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import { timeOrderedUuid } from './time-ordered-id.ts';
import { checkWellFormed } from './issuance.ts';
import type { Keyring, TenantKeys } from './keyring.ts';
import type { EffectiveAssumptions, ShadowAssumptions } from './shadow-assumptions.ts';

export const DEFAULT_PAGE_LIMIT = 50;

export interface ShadowNote {
  note_text: string;
  note_ref?: string | undefined;
  context?: EncounterContext | undefined;
}

export interface IntakeRequest extends ShadowNote {
  certificate_id?: string | undefined;
}

export interface GapAmount {
  condition_id: string;
  element: MeatElement;
  attributed_usd: number;
}

/** The split of a note's value at risk, with one entry per counted condition and missing element. */
export interface NoteLeakage {
  estimated_value_at_risk_usd: number;
  gaps: GapAmount[];
}

export interface ShadowItem {
  item_id: string;
  created_at: string;
  source: ShadowSource;
  batch_id: string | null;
  note_hash: string;
  note_ref_hash: string | null;
  certificate_id: string | null;
  certificate_note_hash_matches: boolean | null;
  ruleset_version: string;
  context_rules_version: string;
  assumptions_revision: number;
  conditions_counted: number;
  mean_completeness: number | null;
  estimated_value_at_risk_usd: number;
  has_deficit: boolean;
  /** Counted conditions with missing elements and their value at risk. */
  gaps: { condition_id: string; missing: MeatElement[]; estimated_value_at_risk_usd: number }[];
  leakage: NoteLeakage;
  result?: RedactedScoreResult;
}

interface StoredResult {
  result: RedactedScoreResult;
  leakage: NoteLeakage;
}

export interface ItemPage {
  items: ShadowItem[];
  next_cursor: string | null;
}

export interface PageOptions {
  cursor?: string | undefined;
  limit?: number | undefined;
}

function noteLeakage(attribution: NoteAttribution): NoteLeakage {
  return {
    estimated_value_at_risk_usd: centsToUsd(attribution.estimated_value_at_risk_cents),
    gaps: attribution.gaps.map((gap) => ({
      condition_id: gap.condition_id,
      element: gap.element,
      attributed_usd: centsToUsd(gap.attributed_cents),
    })),
  };
}

function hasDeficit(result: ScoreResult | RedactedScoreResult): boolean {
  return result.conditions.some((condition) => condition.counted && condition.missing.length > 0);
}

function cursorError(): AppError {
  return new AppError(
    'VALIDATION_FAILED',
    'cursor is invalid or was issued for different filters',
    {
      details: [
        {
          field: 'cursor',
          rule: 'format',
          message: 'use next_cursor from the previous page with the same filters',
        },
      ],
    },
  );
}

/** Encodes the last row of a page, the order and the filters into an opaque cursor. */
export function encodeItemCursor(
  row: ShadowItemRow,
  order: ShadowItemOrder,
  filter: ShadowItemFilter,
): string {
  const position: ShadowItemCursor = { createdAt: row.created_at, itemId: row.item_id };
  if (order === 'risk') {
    position.valueAtRisk = row.estimated_value_at_risk_usd;
  }
  return Buffer.from(JSON.stringify({ o: order, p: position, f: filter })).toString('base64url');
}

/** Decodes a cursor; throws VALIDATION_FAILED unless it was issued for this order and filter. */
export function decodeItemCursor(
  cursor: string,
  order: ShadowItemOrder,
  filter: ShadowItemFilter,
): ShadowItemCursor {
  let parsed: { o?: unknown; p?: Partial<ShadowItemCursor>; f?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as typeof parsed;
  } catch {
    throw cursorError();
  }
  const position = parsed.p;
  if (
    parsed.o !== order ||
    JSON.stringify(parsed.f) !== JSON.stringify(filter) ||
    typeof position?.createdAt !== 'string' ||
    typeof position.itemId !== 'string' ||
    (order === 'risk' && typeof position.valueAtRisk !== 'number')
  ) {
    throw cursorError();
  }
  return {
    createdAt: position.createdAt,
    itemId: position.itemId,
    valueAtRisk: position.valueAtRisk,
  };
}

/** Converts a stored row to the API form; `withResult` adds the full redacted result. */
export function itemFromRow(row: ShadowItemRow, withResult: boolean): ShadowItem {
  const stored = JSON.parse(row.result_json) as StoredResult;
  const item: ShadowItem = {
    item_id: row.item_id,
    created_at: row.created_at,
    source: row.source,
    batch_id: row.batch_id,
    note_hash: row.note_hash,
    note_ref_hash: row.note_ref_hash,
    certificate_id: row.certificate_id,
    certificate_note_hash_matches: row.certificate_note_match,
    ruleset_version: row.ruleset_version,
    context_rules_version: row.context_rules_version,
    assumptions_revision: row.assumptions_revision,
    conditions_counted: row.conditions_counted,
    mean_completeness: row.mean_completeness,
    estimated_value_at_risk_usd: row.estimated_value_at_risk_usd,
    has_deficit: row.has_deficit,
    gaps: stored.result.conditions
      .filter((condition) => condition.counted && condition.missing.length > 0)
      .map((condition) => ({
        condition_id: condition.condition_id,
        missing: [...condition.missing],
        estimated_value_at_risk_usd: condition.estimated_value_at_risk_usd,
      })),
    leakage: stored.leakage,
  };
  if (withResult) {
    item.result = stored.result;
  }
  return item;
}

export class ShadowService {
  readonly #store: Store;
  readonly #keyring: Keyring;
  readonly #certificates: CertificateService;
  readonly #assumptions: ShadowAssumptions;
  readonly #ruleset: CompiledRuleset;
  readonly #clock: Clock;

  constructor(options: {
    store: Store;
    keyring: Keyring;
    certificates: CertificateService;
    assumptions: ShadowAssumptions;
    ruleset: CompiledRuleset;
    clock: Clock;
  }) {
    this.#store = options.store;
    this.#keyring = options.keyring;
    this.#certificates = options.certificates;
    this.#assumptions = options.assumptions;
    this.#ruleset = options.ruleset;
    this.#clock = options.clock;
  }

  async #tenant(tenantId: string): Promise<TenantKeys> {
    const keys = await this.#keyring.get(tenantId);
    if (!keys) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    return keys;
  }

  /**
   * Rejects note text or a note reference that contains a lone UTF-16 surrogate, as the
   * certificate API does, because hashing would silently replace it and scoring offsets would
   * point into broken text. In a batch, fields are named by position (`notes.3.note_text`).
   */
  #checkNotes(notes: readonly (ShadowNote & { note_ref?: string })[], batch: boolean): void {
    const fields: Record<string, unknown> = {};
    notes.forEach((note, index) => {
      const prefix = batch ? `notes.${index}.` : '';
      fields[`${prefix}note_text`] = note.note_text;
      fields[`${prefix}note_ref`] = note.note_ref;
    });
    checkWellFormed(fields);
  }

  #score(note: ShadowNote, assumptions: EffectiveAssumptions): ScoreResult {
    const input =
      note.context === undefined
        ? { text: note.note_text }
        : { text: note.note_text, context: note.context };
    return applyValueAssumptions(scoreNote(input, this.#ruleset), assumptions);
  }

  /** Returns the tenant's current revenue assumptions. */
  async getAssumptions(tenantId: string): Promise<EffectiveAssumptions> {
    await this.#tenant(tenantId);
    return this.#assumptions.get(tenantId);
  }

  /** Replaces the tenant's revenue assumptions and returns the stored set. */
  async putAssumptions(
    tenantId: string,
    update: Parameters<ShadowAssumptions['put']>[1],
  ): Promise<EffectiveAssumptions> {
    await this.#tenant(tenantId);
    return this.#assumptions.put(tenantId, update);
  }

  /** Scores one note without storing anything. */
  async evidenceDeficit(
    tenantId: string,
    note: ShadowNote,
  ): Promise<{
    note_hash: string;
    result: RedactedScoreResult;
    leakage: NoteLeakage;
    assumptions: EffectiveAssumptions;
  }> {
    this.#checkNotes([note], false);
    await this.#tenant(tenantId);
    const assumptions = await this.#assumptions.get(tenantId);
    const result = this.#score(note, assumptions);
    return {
      note_hash: sha256Hex(nodeCrypto, note.note_text),
      result: redactResult(result),
      leakage: noteLeakage(attributeNoteLeakage(result, this.#ruleset)),
      assumptions,
    };
  }

  #newItem(
    keys: TenantKeys,
    note: ShadowNote,
    result: ScoreResult,
    meta: {
      source: ShadowSource;
      createdAt: string;
      batchId: string | null;
      assumptionsRevision: number;
      certificateId?: string | undefined;
      certificateNoteMatch?: boolean | undefined;
    },
  ): { row: NewShadowItem; leakage: NoteLeakage; redacted: RedactedScoreResult } {
    const attribution = attributeNoteLeakage(result, this.#ruleset);
    const redacted = redactResult(result);
    const leakage = noteLeakage(attribution);
    const stored: StoredResult = { result: redacted, leakage };
    const row: NewShadowItem = {
      item: {
        tenant_id: keys.tenant.tenant_id,
        item_id: timeOrderedUuid(Date.parse(meta.createdAt)),
        created_at: meta.createdAt,
        source: meta.source,
        batch_id: meta.batchId,
        note_hash: sha256Hex(nodeCrypto, note.note_text),
        note_ref_hash:
          note.note_ref === undefined
            ? null
            : keys.hashIdentifier('shadow_note_ref', note.note_ref),
        certificate_id: meta.certificateId ?? null,
        certificate_note_match: meta.certificateNoteMatch ?? null,
        ruleset_version: result.ruleset_version,
        context_rules_version: result.context_rules_version,
        assumptions_revision: meta.assumptionsRevision,
        conditions_counted: result.summary.conditions_counted,
        mean_completeness: result.summary.mean_completeness,
        estimated_value_at_risk_usd: result.summary.estimated_value_at_risk_usd,
        has_deficit: hasDeficit(result),
        result_json: JSON.stringify(stored),
      },
      conditions: result.conditions.map((condition) => ({
        condition_id: condition.condition_id,
        counted: condition.counted,
        // A condition counted from a diagnosis code or the problem list without a note mention
        // counts as mentioned, so that counted items are a subset of mentioned ones and the
        // dashboard's items_not_counted (mentioned minus counted) cannot go negative.
        mentioned: condition.mentions.length > 0 || condition.counted,
        completeness: condition.completeness,
        met: {
          monitor: condition.meat.monitor.met,
          evaluate: condition.meat.evaluate.met,
          assess: condition.meat.assess.met,
          treat: condition.meat.treat.met,
        },
        estimated_value_at_risk_usd: condition.estimated_value_at_risk_usd,
      })),
      gaps: attribution.gaps.map((gap) => ({ ...gap })),
      findings: result.note_findings.map((finding) => ({
        rule_id: finding.rule_id,
        kind: finding.kind,
      })),
    };
    return { row, leakage, redacted };
  }

  /** Scores a batch, stores one item per note in one transaction, and returns results and a summary. */
  async analyze(
    tenantId: string,
    notes: readonly ShadowNote[],
  ): Promise<{
    batch_id: string;
    created_at: string;
    items: (ShadowItem & { index: number })[];
    summary: CorpusReport;
    assumptions: EffectiveAssumptions;
  }> {
    this.#checkNotes(notes, true);
    const keys = await this.#tenant(tenantId);
    const assumptions = await this.#assumptions.get(tenantId);
    const batchId = randomUUID();
    const createdAt = this.#clock.now().toISOString();
    const aggregator = new CorpusAggregator();
    const rows: NewShadowItem[] = [];
    for (const note of notes) {
      const result = this.#score(note, assumptions);
      const { row } = this.#newItem(keys, note, result, {
        source: 'analyze',
        createdAt,
        batchId,
        assumptionsRevision: assumptions.revision,
      });
      aggregator.add(row.item.item_id, result);
      rows.push(row);
    }
    await this.#store.insertShadowItems(rows);
    return {
      batch_id: batchId,
      created_at: createdAt,
      items: rows.map((row, index) => ({ index, ...itemFromRow(row.item, true) })),
      summary: aggregator.report(),
      assumptions,
    };
  }

  /** Estimates revenue at risk for a batch without storing it. */
  async leakageReport(
    tenantId: string,
    notes: readonly ShadowNote[],
  ): Promise<
    LeakageReport & {
      per_note: (NoteLeakage & { index: number; note_hash: string })[];
      assumptions: EffectiveAssumptions;
    }
  > {
    this.#checkNotes(notes, true);
    await this.#tenant(tenantId);
    const assumptions = await this.#assumptions.get(tenantId);
    const aggregator = new LeakageAggregator();
    const perNote = notes.map((note, index) => {
      const attribution = aggregator.add(this.#score(note, assumptions), this.#ruleset);
      return {
        index,
        note_hash: sha256Hex(nodeCrypto, note.note_text),
        ...noteLeakage(attribution),
      };
    });
    return { ...aggregator.report(), per_note: perNote, assumptions };
  }

  /**
   * Scores and stores one note, optionally linked to a certificate of the same tenant. A
   * certificate of another tenant fails exactly like a missing one.
   */
  async intake(tenantId: string, request: IntakeRequest): Promise<ShadowItem> {
    this.#checkNotes([request], false);
    const keys = await this.#tenant(tenantId);
    let certificateNoteMatch: boolean | undefined;
    const noteHash = sha256Hex(nodeCrypto, request.note_text);
    if (request.certificate_id !== undefined) {
      const certificate = await this.#certificates.get(tenantId, request.certificate_id);
      certificateNoteMatch = certificate.note_hash === noteHash;
    }
    const assumptions = await this.#assumptions.get(tenantId);
    const result = this.#score(request, assumptions);
    const { row } = this.#newItem(keys, request, result, {
      source: 'intake',
      createdAt: this.#clock.now().toISOString(),
      batchId: null,
      assumptionsRevision: assumptions.revision,
      certificateId: request.certificate_id,
      certificateNoteMatch,
    });
    await this.#store.insertShadowItems([row]);
    return itemFromRow(row.item, true);
  }

  /** Returns one stored item; another tenant's item fails exactly like a missing one. */
  async getItem(tenantId: string, itemId: string): Promise<ShadowItem> {
    const row = await this.#store.getShadowItem(tenantId, itemId);
    if (!row) {
      throw new AppError('SHADOW_ITEM_NOT_FOUND', 'shadow item not found');
    }
    return itemFromRow(row, true);
  }

  /** Lists stored items newest first, or by value at risk, with cursor pagination. */
  async listItems(
    tenantId: string,
    filter: ShadowItemFilter,
    options: PageOptions,
    order: ShadowItemOrder = 'recent',
  ): Promise<ItemPage> {
    if (
      filter.conditionId !== undefined &&
      !this.#ruleset.conditions.some((c) => c.id === filter.conditionId)
    ) {
      throw new AppError(
        'VALIDATION_FAILED',
        `condition ${filter.conditionId} is not in ruleset ${this.#ruleset.version}`,
        {
          details: [
            {
              field: 'condition',
              rule: 'enum',
              message: `must be one of ${this.#ruleset.conditions.map((c) => c.id).join(', ')}`,
            },
          ],
        },
      );
    }
    const limit = options.limit ?? DEFAULT_PAGE_LIMIT;
    const after =
      options.cursor === undefined ? undefined : decodeItemCursor(options.cursor, order, filter);
    const rows = await this.#store.listShadowItems(tenantId, filter, order, after, limit + 1);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      items: page.map((row) => itemFromRow(row, false)),
      next_cursor: rows.length > limit && last ? encodeItemCursor(last, order, filter) : null,
    };
  }
}
