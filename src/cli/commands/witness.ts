// `cdil witness`: checks that a CDIL server's log for one tenant only grows. The logic is in
// src/services/witness.ts. This file reads the options and the token, prints the outcome and
// repeats the check when --interval is given.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  DEFAULT_WITNESS_TIMEOUT_MS,
  REJECTED_STATUSES,
  WitnessError,
  WitnessErrorCode,
  runWitness,
  type WitnessOptions,
} from '../../services/witness.ts';
import { printable } from './verify.ts';

export const EXIT_ACCEPTED = 0;
export const EXIT_REJECTED = 1;
export const EXIT_UNUSABLE = 2;

/** Environment variable that carries the bearer token when --token-file is not given. */
export const WITNESS_TOKEN_ENV = 'CDIL_WITNESS_TOKEN';

interface WitnessCliOptions {
  url: string;
  tenant: string;
  state: string;
  tokenFile?: string;
  logKey?: string;
  interval?: string;
  timeout?: string;
}

function readToken(options: WitnessCliOptions): string {
  let token: string | undefined;
  if (options.tokenFile !== undefined) {
    try {
      token = readFileSync(options.tokenFile, 'utf8').trim();
    } catch (error) {
      throw new WitnessError(
        WitnessErrorCode.INVALID_INPUT,
        `cannot read --token-file ${options.tokenFile}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  } else {
    token = process.env[WITNESS_TOKEN_ENV]?.trim();
  }
  if (!token) {
    throw new WitnessError(
      WitnessErrorCode.INVALID_INPUT,
      `an auditor token is required: give --token-file or set ${WITNESS_TOKEN_ENV}`,
    );
  }
  return token;
}

function parseSeconds(name: string, text: string, max: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new WitnessError(
      WitnessErrorCode.INVALID_INPUT,
      `${name} must be a number of seconds above 0 and at most ${max}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/** Runs the witness once and returns the exit status. Output goes to the given writers. */
async function checkOnce(options: WitnessOptions, out: (text: string) => void): Promise<number> {
  const outcome = await runWitness(options);
  for (const line of outcome.lines) {
    out(printable(line));
  }
  return REJECTED_STATUSES.includes(outcome.status) ? EXIT_REJECTED : EXIT_ACCEPTED;
}

/**
 * Runs the witness once, or every --interval seconds until a check rejects a checkpoint or the
 * process receives SIGINT or SIGTERM. In interval mode an unreachable server or a bad response
 * is logged and retried at the next interval.
 */
export async function runWitnessCommand(
  cliOptions: WitnessCliOptions,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  let options: WitnessOptions;
  let intervalMs: number | undefined;
  try {
    const timeout =
      cliOptions.timeout === undefined
        ? DEFAULT_WITNESS_TIMEOUT_MS
        : parseSeconds('--timeout', cliOptions.timeout, 600) * 1000;
    intervalMs =
      cliOptions.interval === undefined
        ? undefined
        : parseSeconds('--interval', cliOptions.interval, 86_400) * 1000;
    options = {
      url: cliOptions.url,
      tenantId: cliOptions.tenant,
      token: readToken(cliOptions),
      stateDir: cliOptions.state,
      logKey: cliOptions.logKey,
      timeoutMs: timeout,
    };
  } catch (error) {
    err(`error: ${(error as Error).message}`);
    return EXIT_UNUSABLE;
  }

  if (intervalMs === undefined) {
    try {
      return await checkOnce(options, out);
    } catch (error) {
      if (error instanceof WitnessError) {
        err(`error: ${printable(error.message)} [${error.code}]`);
        return EXIT_UNUSABLE;
      }
      throw error;
    }
  }

  let stopped = false;
  let wait: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  const stop = () => {
    stopped = true;
    if (wait) {
      clearTimeout(wait.timer);
      wait.resolve();
    }
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    while (!stopped) {
      out(`${new Date().toISOString()} checking ${options.url} for tenant ${options.tenantId}`);
      try {
        const status = await checkOnce(options, out);
        if (status !== EXIT_ACCEPTED) {
          return status;
        }
      } catch (error) {
        if (!(error instanceof WitnessError) || error.code === WitnessErrorCode.INVALID_INPUT) {
          err(`error: ${printable((error as Error).message)}`);
          return EXIT_UNUSABLE;
        }
        err(
          `error: ${printable(error.message)} [${error.code}]; retrying in ${intervalMs / 1000} s`,
        );
      }
      if (!stopped) {
        await new Promise<void>((resolve) => {
          wait = { timer: setTimeout(resolve, intervalMs), resolve };
        });
        wait = undefined;
      }
    }
    return EXIT_ACCEPTED;
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
}

export function registerWitnessCommand(program: Command): void {
  program
    .command('witness')
    .description(
      "Check that a CDIL server's log for one tenant only grows. Verifies the latest checkpoint " +
        'with the pinned log key and a consistency proof from the checkpoint recorded in --state, ' +
        'and records the new checkpoint only when both verify. Exit status: 0 accepted, ' +
        '1 rejected (rollback, fork, invalid signature or proof; the state is left unchanged), ' +
        '2 unusable (bad option, token of another tenant, state file or server response).',
    )
    .requiredOption(
      '--url <url>',
      'base URL of the CDIL server, for example http://127.0.0.1:8080; a path such as /cdil is kept as a prefix of every route',
    )
    .requiredOption('--tenant <id>', 'tenant whose log to watch')
    .requiredOption(
      '--state <dir>',
      'folder for the state files, one <tenant>.json per tenant (created with mode 0700)',
    )
    .option(
      '--token-file <file>',
      `file containing an auditor bearer token for the tenant (default: the ${WITNESS_TOKEN_ENV} environment variable)`,
    )
    .option(
      '--log-key <key>',
      "signed-note verifier key to pin on first contact instead of trusting the server's (name+key id+key)",
    )
    .option('--interval <seconds>', 'repeat the check at this interval until stopped')
    .option('--timeout <seconds>', 'time limit for each HTTP request (default 10)')
    .action(async (options: WitnessCliOptions) => {
      process.exitCode = await runWitnessCommand(
        options,
        (text) => process.stdout.write(text + '\n'),
        (text) => process.stderr.write(text + '\n'),
      );
    });
}
