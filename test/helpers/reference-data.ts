// Locates the reference data sets (real clinical notes, annotated assertions). The folder is
// CDIL_REFERENCE_DATA when set, otherwise ../shared/data beside the repository.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';

const root = resolve(import.meta.dirname, '..', '..');

export const referenceDataDir = resolve(
  process.env.CDIL_REFERENCE_DATA ?? join(root, '..', 'shared', 'data'),
);

export interface CorpusNote {
  note_id: number;
  specialty: string;
  text: string;
}

export function corpusPath(): string {
  const path = join(referenceDataDir, 'mtsamples', 'notes.jsonl.gz');
  if (!existsSync(path)) {
    throw new Error(
      `reference notes not found at ${path}; set CDIL_REFERENCE_DATA to the data folder`,
    );
  }
  return path;
}

export function readCorpus(): CorpusNote[] {
  return gunzipSync(readFileSync(corpusPath()))
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as CorpusNote);
}
