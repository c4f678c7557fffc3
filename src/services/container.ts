// Wires the services to one store. Edges (HTTP server, CLI) build this once and call only it.
import type { Config } from '../config/config.ts';
import { openStore } from '../storage/open.ts';
import type { MigrationReport, Store } from '../storage/store.ts';
import { loadDefaultRuleset } from '../scoring/ruleset.ts';
import { AuditTrail } from './audit.ts';
import { AuditExporter } from './audit-export.ts';
import { CertificateService } from './certificates.ts';
import { systemClock, type Clock } from './clock.ts';
import { DashboardService } from './dashboard.ts';
import { IssuanceService } from './issuance.ts';
import { Keyring } from './keyring.ts';
import { ShadowAssumptions } from './shadow-assumptions.ts';
import { ShadowService } from './shadow.ts';
import { TenantService } from './tenants.ts';
import { TransparencyLog } from './transparency-log.ts';

export interface Services {
  store: Store;
  keyring: Keyring;
  tenants: TenantService;
  issuance: IssuanceService;
  certificates: CertificateService;
  shadow: ShadowService;
  dashboard: DashboardService;
  log: TransparencyLog;
  audit: AuditTrail;
  auditExport: AuditExporter;
  migration: MigrationReport | undefined;
  close(): Promise<void>;
}

export interface ServiceOptions {
  store?: Store;
  clock?: Clock;
  /** Overrides config.migrateOnStart. */
  migrate?: boolean;
}

export async function createServices(
  config: Config,
  options: ServiceOptions = {},
): Promise<Services> {
  const store = options.store ?? openStore(config);
  const clock = options.clock ?? systemClock;
  const migration = (options.migrate ?? config.migrateOnStart) ? await store.migrate() : undefined;
  const keyring = new Keyring(store, config.kek);
  const log = new TransparencyLog({
    store,
    kek: config.kek,
    clock,
    originPrefix: config.logOrigin,
  });
  const certificates = new CertificateService(store, log);
  const ruleset = loadDefaultRuleset();
  const shadow = new ShadowService({
    store,
    keyring,
    certificates,
    assumptions: new ShadowAssumptions(store, ruleset, clock),
    ruleset,
    clock,
  });
  return {
    store,
    keyring,
    tenants: new TenantService(store, config.kek, clock, log),
    issuance: new IssuanceService(store, keyring, clock),
    certificates,
    shadow,
    dashboard: new DashboardService({ store, certificates, shadow, ruleset, clock }),
    log,
    audit: new AuditTrail(store, keyring, clock),
    auditExport: new AuditExporter(store, log, clock),
    migration,
    close: () => store.close(),
  };
}
