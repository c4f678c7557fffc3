// Tenant rows as both engines return them: booleans are stored as INTEGER 0/1.
import type { TenantRow } from './store.ts';

export interface RawTenant extends Omit<TenantRow, 'timestamp_certificates'> {
  timestamp_certificates: number | boolean;
}

export function toTenant(raw: RawTenant | undefined): TenantRow | undefined {
  return raw
    ? {
        ...raw,
        timestamp_certificates:
          raw.timestamp_certificates === 1 || raw.timestamp_certificates === true,
      }
    : undefined;
}
