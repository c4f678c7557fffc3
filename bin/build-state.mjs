// Tells whether the JavaScript build of the cdil command in dist/ matches the TypeScript
// sources. scripts/build.mjs records when it started and which source files went into the
// build. The build is current while all of them exist and none changed after that moment.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Name of the file, in the build folder, that lists the build's source files. */
export const BUILD_INPUTS_FILE = 'inputs.json';

/**
 * Returns true when `buildDir` contains a complete build whose sources, resolved against `root`,
 * all exist and are older than the build. Any missing or unreadable file gives false.
 */
export function isBuildCurrent(root, buildDir) {
  let record;
  try {
    record = JSON.parse(readFileSync(join(buildDir, BUILD_INPUTS_FILE), 'utf8'));
  } catch {
    return false;
  }
  const { startedAt, inputs } = record ?? {};
  if (!Number.isFinite(startedAt) || !Array.isArray(inputs) || inputs.length === 0) {
    return false;
  }
  for (const input of inputs) {
    const stats =
      typeof input === 'string'
        ? statSync(join(root, input), { throwIfNoEntry: false })
        : undefined;
    if (!stats || stats.mtimeMs > startedAt) {
      return false;
    }
  }
  return true;
}
