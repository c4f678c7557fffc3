// Reads clinical notes from a JSON Lines file, optionally gzip-compressed. Each line is an
// object with a `text` field; `note_id` is used for display when present. An object `context`
// (structured encounter context for shadow-mode scoring) is passed through unchecked.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export interface NoteRecord {
  id: string;
  text: string;
  context?: unknown;
}

export function readNotesFile(path: string): NoteRecord[] {
  const raw = readFileSync(path);
  const isGzip = raw.length > 2 && raw[0] === 0x1f && raw[1] === 0x8b;
  const text = (isGzip ? gunzipSync(raw) : raw).toString('utf8');
  const notes: NoteRecord[] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') {
      return;
    }
    let parsed: { text?: unknown; note_id?: string | number; context?: unknown };
    try {
      parsed = JSON.parse(line) as typeof parsed;
    } catch {
      throw new Error(`${path} line ${index + 1} is not JSON`);
    }
    if (typeof parsed.text !== 'string' || parsed.text.length === 0) {
      throw new Error(`${path} line ${index + 1} has no non-empty "text" field`);
    }
    const note: NoteRecord = { id: String(parsed.note_id ?? index + 1), text: parsed.text };
    if (typeof parsed.context === 'object' && parsed.context !== null) {
      note.context = parsed.context;
    }
    notes.push(note);
  });
  return notes;
}
