// Field-by-field checks for rule files parsed from JSON. Every error names the path of the
// offending field, for example `conditions[3].meat.treat[0].terms[2]`, so a rule author can find
// it without a schema tool.

export class RulesetValidationError extends Error {
  override readonly name = 'RulesetValidationError';
  /** Path of the invalid field inside the rule file. */
  readonly field: string;
  constructor(field: string, message: string) {
    super(`invalid ruleset field ${field}: ${message}`);
    this.field = field;
  }
}

export function fail(field: string, message: string): never {
  throw new RulesetValidationError(field, message);
}

export function describe(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'an array';
  }
  return typeof value === 'object' ? 'an object' : JSON.stringify(value);
}

export function expectObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(field, `expected an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

export function expectArray(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) {
    fail(field, `expected an array, got ${describe(value)}`);
  }
  return value;
}

export function expectString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    fail(field, `expected a non-empty string, got ${describe(value)}`);
  }
  return value;
}

export function expectNumber(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    fail(field, `expected a number from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

export function expectBoolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') {
    fail(field, `expected true or false, got ${describe(value)}`);
  }
  return value;
}

export function expectStringArray(value: unknown, field: string, allowEmpty = false): string[] {
  const items = expectArray(value, field);
  if (!allowEmpty && items.length === 0) {
    fail(field, 'expected at least one entry');
  }
  return items.map((item, index) => expectString(item, `${field}[${index}]`));
}

export function expectOneOf<T extends string>(
  value: unknown,
  field: string,
  allowed: readonly T[],
): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    fail(field, `expected one of ${allowed.join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

/** Rejects keys that the format does not define, which catches misspelt optional fields. */
export function expectKnownKeys(
  record: Record<string, unknown>,
  field: string,
  allowed: readonly string[],
): void {
  for (const key of Object.keys(record)) {
    if (!allowed.includes(key)) {
      fail(`${field}.${key}`, `unknown field, expected one of ${allowed.join(', ')}`);
    }
  }
}
