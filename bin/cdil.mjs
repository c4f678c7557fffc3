#!/usr/bin/env node
// Entry point of the cdil command. Runs the JavaScript build in dist/ (made by `npm install`
// or `npm run build`) while it matches the sources, and otherwise the TypeScript sources
// through tsx, so an edited source file takes effect without a rebuild.
// CDIL_FROM_SOURCE=1 always runs the sources.
import { fileURLToPath } from 'node:url';
import { isBuildCurrent } from './build-state.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

if (process.env.CDIL_FROM_SOURCE !== '1' && isBuildCurrent(root, `${root}dist`)) {
  await import('../dist/cli.mjs');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
