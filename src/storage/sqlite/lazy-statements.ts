// Prepared statements that are compiled on first use. Preparing a statement checks it against
// the schema, so a store opened on an older schema can still run the statements that schema has.
import type Database from 'better-sqlite3';

/** Returns an object whose property `name` is the statement for `texts[name]`, prepared once. */
export function lazyStatements<K extends string>(
  db: Database.Database,
  texts: Readonly<Record<K, string>>,
): Record<K, Database.Statement> {
  const prepared = new Map<K, Database.Statement>();
  return new Proxy({} as Record<K, Database.Statement>, {
    get(_target, name: K) {
      let statement = prepared.get(name);
      if (!statement) {
        statement = db.prepare(texts[name]);
        prepared.set(name, statement);
      }
      return statement;
    },
  });
}
