// Parsing of request bodies. Only JSON in UTF-8 is accepted, without a content encoding.
// JSON.parse accepts a key that appears twice in one object
// and keeps the last value, while other parsers keep the first or reject the text. A proxy, a
// log or a client library could then see a different note than the one certified, so a
// duplicate key at any depth is rejected. The keys __proto__ and constructor are rejected too,
// because code that merges a parsed object into another can turn them into prototype changes.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../services/errors.ts';

const BACKSLASH = 0x5c;
const COLON = 0x3a;
const SPACE = 0x20;
const TAB = 0x09;
const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** Maximum length of a field path quoted in an error message. A longer path keeps its end. */
const MAX_QUOTED_PATH = 200;

const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor']);

function isJsonWhitespace(code: number): boolean {
  return code === SPACE || code === LINE_FEED || code === CARRIAGE_RETURN || code === TAB;
}

/** Returns the index of the quote that closes the string opened at `open`, in valid JSON. */
function closingQuote(text: string, open: number): number {
  let close = text.indexOf('"', open + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(close - 1 - backslashes) === BACKSLASH) {
      backslashes += 1;
    }
    // An odd run of backslashes escapes the quote, so the string goes on.
    if (backslashes % 2 === 0) {
      return close;
    }
    close = text.indexOf('"', close + 1);
  }
}

/** Returns the index of the first character at or after `from` that is not JSON whitespace. */
function skipWhitespace(text: string, from: number): number {
  let at = from;
  while (isJsonWhitespace(text.charCodeAt(at))) {
    at += 1;
  }
  return at;
}

/**
 * Counts the object members written in valid JSON text. Each member is a string followed by a
 * colon, so the count is the number of strings that a colon follows. indexOf jumps over the
 * text between quotes, so a long note string costs a few native searches, not a character loop.
 */
function countWrittenMembers(text: string): number {
  let count = 0;
  let open = text.indexOf('"');
  while (open !== -1) {
    const after = skipWhitespace(text, closingQuote(text, open) + 1);
    if (text.charCodeAt(after) === COLON) {
      count += 1;
    }
    open = text.indexOf('"', after);
  }
  return count;
}

/**
 * Counts the keys of every object in a parsed value and reports whether one of them is
 * forbidden. It walks with an explicit stack, because JSON.parse accepts nesting far deeper
 * than the call stack allows.
 */
function countParsedKeys(root: unknown): { count: number; forbidden: boolean } {
  let count = 0;
  let forbidden = false;
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const value = pending.pop();
    if (value === null || typeof value !== 'object') {
      continue;
    }
    if (Array.isArray(value)) {
      for (const item of value) {
        pending.push(item);
      }
      continue;
    }
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record);
    count += keys.length;
    for (const key of keys) {
      if (FORBIDDEN_KEYS.has(key)) {
        forbidden = true;
      }
      pending.push(record[key]);
    }
  }
  return { count, forbidden };
}

/** A place in the parsed value, linked to its parent so a path is built only when needed. */
interface Place {
  parent: Place | undefined;
  name: string;
}

function pathOf(place: Place): string {
  const names: string[] = [];
  for (let at: Place | undefined = place; at !== undefined; at = at.parent) {
    names.push(at.name);
  }
  const path = names.reverse().join('.');
  return path.length > MAX_QUOTED_PATH ? `…${path.slice(-(MAX_QUOTED_PATH - 1))}` : path;
}

/** Returns the dotted path of the first forbidden key in a parsed value. */
function findForbiddenKey(root: unknown): string | undefined {
  const pending: { value: unknown; place: Place | undefined }[] = [
    { value: root, place: undefined },
  ];
  while (pending.length > 0) {
    const { value, place } = pending.pop()!;
    if (value === null || typeof value !== 'object') {
      continue;
    }
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const child: Place = { parent: place, name: key };
      if (!Array.isArray(value) && FORBIDDEN_KEYS.has(key)) {
        return pathOf(child);
      }
      pending.push({ value: record[key], place: child });
    }
  }
  return undefined;
}

/** An object or array that the scan of findDuplicateKey is inside. */
interface Container {
  place: Place | undefined;
  /** Keys seen so far, for an object; undefined for an array. */
  keys: Set<string> | undefined;
  /** The last key of an object, or the index of the current item of an array. */
  current: string;
  index: number;
}

/**
 * Returns the dotted path of the first key that repeats within one object of valid JSON text.
 * It reads the text character by character, so it runs only once a duplicate is known to exist.
 */
function findDuplicateKey(text: string): string | undefined {
  const open: Container[] = [];
  let at = 0;
  while (at < text.length) {
    const character = text[at]!;
    const top = open.at(-1);
    if (character === '"') {
      const close = closingQuote(text, at);
      if (top?.keys && text.charCodeAt(skipWhitespace(text, close + 1)) === COLON) {
        const key = JSON.parse(text.slice(at, close + 1)) as string;
        if (top.keys.has(key)) {
          return pathOf({ parent: top.place, name: key });
        }
        top.keys.add(key);
        top.current = key;
      }
      at = close + 1;
      continue;
    }
    if (character === '{' || character === '[') {
      const place = top === undefined ? undefined : { parent: top.place, name: top.current };
      open.push({
        place,
        keys: character === '{' ? new Set() : undefined,
        current: '0',
        index: 0,
      });
    } else if (character === '}' || character === ']') {
      open.pop();
    } else if (character === ',' && top !== undefined && top.keys === undefined) {
      top.index += 1;
      top.current = String(top.index);
    }
    at += 1;
  }
  return undefined;
}

/**
 * Builds the error for a key that the body may not contain. The message quotes the key path as
 * a JSON string, so an empty key reads `""` and a key with control characters stays on one line.
 */
function keyProblem(field: string, message: string, rule: string): AppError {
  return new AppError('VALIDATION_FAILED', `body field ${JSON.stringify(field)} ${message}`, {
    details: [{ field, rule, message }],
  });
}

/**
 * Parses the text of a JSON request body. Throws BODY_NOT_JSON for text that is not JSON, and
 * VALIDATION_FAILED naming the key for a duplicate key or a __proto__ or constructor key.
 */
export function parseJsonBody(text: string): unknown {
  if (text.length === 0) {
    throw new AppError(
      'BODY_NOT_JSON',
      'request body is empty but content-type is application/json',
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The SyntaxError quotes the body, so its message is not passed on.
    throw new AppError('BODY_NOT_JSON', 'request body is not valid JSON');
  }
  if (value === null || typeof value !== 'object') {
    return value;
  }
  const parsed = countParsedKeys(value);
  if (parsed.forbidden) {
    const field = findForbiddenKey(value)!;
    throw keyProblem(field, 'is not allowed, because it could change object prototypes', 'key');
  }
  // JSON.parse keeps one member per distinct key, so fewer parsed keys than written members
  // means that some object repeats a key.
  if (parsed.count !== countWrittenMembers(text)) {
    const field = findDuplicateKey(text) ?? '(body)';
    throw keyProblem(field, 'appears more than once in its object; send each key once', 'unique');
  }
  return value;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Matches the charset parameter of a content-type header: group 1 if quoted, else group 2. */
const CHARSET_PARAMETER = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i;

/** Maximum length of a header value quoted in an error message. */
const MAX_QUOTED_HEADER = 40;

function quoteHeader(value: string): string {
  return JSON.stringify(
    value.length > MAX_QUOTED_HEADER ? `${value.slice(0, MAX_QUOTED_HEADER)}…` : value,
  );
}

/** Rejects a body that is compressed or declared in a charset other than UTF-8, with 415. */
function checkBodyEncoding(request: FastifyRequest): void {
  const encoding = request.headers['content-encoding'];
  if (encoding !== undefined && !/^\s*(?:identity\s*)?$/i.test(encoding)) {
    throw new AppError(
      'UNSUPPORTED_MEDIA_TYPE',
      `content encodings are not supported (content-encoding ${quoteHeader(encoding)}); ` +
        'send the body uncompressed and without a content-encoding header',
    );
  }
  const charset = CHARSET_PARAMETER.exec(request.headers['content-type'] ?? '');
  const name = charset?.[1] ?? charset?.[2];
  if (name !== undefined && name.toLowerCase() !== 'utf-8') {
    throw new AppError(
      'UNSUPPORTED_MEDIA_TYPE',
      `charset ${quoteHeader(name)} is not supported; send the body in UTF-8, with charset=utf-8 or no charset`,
    );
  }
}

/**
 * Installs the one body parser: JSON, decoded as strict UTF-8 and checked by parseJsonBody.
 * The default parser would turn invalid bytes into U+FFFD, so the certified hash would not be
 * the hash of the bytes sent. The default text/plain parser is removed too, because it lets a
 * string body reach validation.
 */
export function installBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let value: unknown;
    try {
      checkBodyEncoding(request);
      let text: string;
      try {
        text = utf8.decode(body as Buffer);
      } catch {
        throw new AppError('BODY_NOT_JSON', 'request body is not valid UTF-8');
      }
      value = parseJsonBody(text);
    } catch (error) {
      done(error as Error, undefined);
      return;
    }
    done(null, value);
  });
}
