// Field checks for JSON objects read from files that nothing signs as a whole, such as bundle
// files and audit export lines: a field the writer never writes would be text no check covers.

/** Returns the keys of `value` that are not in `known`, or none when `value` is not an object. */
export function unknownFields(
  value: unknown,
  known: readonly string[] | ReadonlySet<string>,
): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return [];
  }
  const isKnown = Array.isArray(known)
    ? (key: string) => known.includes(key)
    : (key: string) => (known as ReadonlySet<string>).has(key);
  return Object.keys(value).filter((key) => !isKnown(key));
}
