// The cdil command line.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/config.ts';
import { AppError, fromStoreError } from '../services/errors.ts';
import { SchemaTooNewError } from '../storage/migrations.ts';
import { registerCommands } from './commands/index.ts';

const program = new Command('cdil')
  .description(
    'Clinical Documentation Integrity Layer: certify AI-written clinical notes and prove them later',
  )
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Usage errors exit with 2, as `cdil verify` does for unusable input; help and version exit 0.
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else if (error instanceof ConfigError || error instanceof AppError || error instanceof Error) {
    // A busy, full or unreachable database gets the message of the HTTP API, which states whether
    // to retry, followed by the store's own detail.
    const storeFailure = fromStoreError(error);
    const message = storeFailure ? `${storeFailure.message} (${error.message})` : error.message;
    process.stderr.write(`error: ${message}\n`);
    // 78 is EX_CONFIG from sysexits.h: the deployment, not the input, must change.
    process.exitCode = error instanceof ConfigError || error instanceof SchemaTooNewError ? 78 : 1;
  } else {
    throw error;
  }
}
