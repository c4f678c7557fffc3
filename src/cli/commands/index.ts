// Every cdil subcommand, registered in the order `cdil --help` lists them.
import type { Command } from 'commander';
import { registerAdminCommands } from './admin.ts';
import { registerAuditCommand } from './audit.ts';
import { registerDemoCommand } from './demo.ts';
import { registerLedgerCommand } from './ledger.ts';
import { registerServeCommand } from './serve.ts';
import { registerShadowCommand } from './shadow.ts';
import { registerVerifyCommand } from './verify.ts';
import { registerWitnessCommand } from './witness.ts';

/** Adds every subcommand to `program`. */
export function registerCommands(program: Command): void {
  registerServeCommand(program);
  registerAdminCommands(program);
  registerVerifyCommand(program);
  registerLedgerCommand(program);
  registerWitnessCommand(program);
  registerAuditCommand(program);
  registerDemoCommand(program);
  registerShadowCommand(program);
}
