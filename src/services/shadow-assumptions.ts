// Per-tenant revenue assumptions for shadow-mode estimates. A tenant without stored assumptions
// uses the ruleset defaults (revision 0). Each update stores the whole set under the next
// revision, and every stored item records the revision it was scored with.
//
// Reads are cached per tenant for ASSUMPTIONS_TTL_MS because stateless scoring reads them on
// every request. An update clears this process's entry at once; other server processes
// (`cdil serve --workers`) use the new set within the TTL. Results always report the revision
// they were computed with.
import {
  VALUE_FORMULA,
  defaultValueAssumptions,
  type ValueAssumptions,
} from '../scoring/valuation.ts';
import type { CompiledRuleset } from '../scoring/ruleset.ts';
import type { Store } from '../storage/store.ts';
import type { Clock } from './clock.ts';

export interface EffectiveAssumptions extends ValueAssumptions {
  /** 0 for the ruleset defaults, then 1, 2, ... for each update. */
  readonly revision: number;
  readonly source: 'ruleset_default' | 'tenant';
  readonly ruleset_version: string;
  readonly formula: string;
  readonly updated_at: string | null;
}

export interface AssumptionsUpdate {
  condition_values_usd?: Readonly<Record<string, number | undefined>> | undefined;
  basis?: string | undefined;
}

export const ASSUMPTIONS_TTL_MS = 5_000;

interface StoredAssumptions {
  basis: string;
  condition_values_usd: Record<string, number>;
}

export class ShadowAssumptions {
  readonly #store: Store;
  readonly #ruleset: CompiledRuleset;
  readonly #clock: Clock;
  readonly #defaults: ValueAssumptions;
  readonly #cache = new Map<string, { loadedAt: number; value: Promise<EffectiveAssumptions> }>();

  constructor(store: Store, ruleset: CompiledRuleset, clock: Clock) {
    this.#store = store;
    this.#ruleset = ruleset;
    this.#clock = clock;
    this.#defaults = defaultValueAssumptions(ruleset);
  }

  /** Returns the tenant's assumptions, with ruleset defaults for conditions it did not set. */
  get(tenantId: string): Promise<EffectiveAssumptions> {
    const now = Date.now();
    const cached = this.#cache.get(tenantId);
    if (cached && now - cached.loadedAt < ASSUMPTIONS_TTL_MS) {
      return cached.value;
    }
    const value = this.#load(tenantId);
    this.#cache.set(tenantId, { loadedAt: now, value });
    value.catch(() => this.#cache.delete(tenantId));
    return value;
  }

  async #load(tenantId: string): Promise<EffectiveAssumptions> {
    const row = await this.#store.getShadowAssumptions(tenantId);
    if (row === undefined) {
      return {
        ...this.#defaults,
        revision: 0,
        source: 'ruleset_default',
        ruleset_version: this.#ruleset.version,
        formula: VALUE_FORMULA,
        updated_at: null,
      };
    }
    const stored = JSON.parse(row.assumptions_json) as StoredAssumptions;
    return {
      currency: 'USD',
      basis: stored.basis,
      // Conditions added to the ruleset after the update take their default value.
      condition_values_usd: {
        ...this.#defaults.condition_values_usd,
        ...stored.condition_values_usd,
      },
      revision: row.revision,
      source: 'tenant',
      ruleset_version: this.#ruleset.version,
      formula: VALUE_FORMULA,
      updated_at: row.updated_at,
    };
  }

  /**
   * Replaces the tenant's assumptions. Conditions left out of the update, and a missing basis,
   * take the ruleset defaults. The request schema has already checked ids and ranges.
   */
  async put(tenantId: string, update: AssumptionsUpdate): Promise<EffectiveAssumptions> {
    const values: Record<string, number> = { ...this.#defaults.condition_values_usd };
    for (const [conditionId, value] of Object.entries(update.condition_values_usd ?? {})) {
      if (value !== undefined) {
        values[conditionId] = value;
      }
    }
    const stored: StoredAssumptions = {
      basis: update.basis ?? this.#defaults.basis,
      condition_values_usd: values,
    };
    await this.#store.putShadowAssumptions(
      tenantId,
      JSON.stringify(stored),
      this.#clock.now().toISOString(),
    );
    this.#cache.delete(tenantId);
    return this.get(tenantId);
  }
}
