// The SQL text shared by both engines uses `?` placeholders; PostgreSQL wants `$1`, `$2`, ...

/** Rewrites `?` placeholders as PostgreSQL's `$1`, `$2`, ... The SQL must contain no other `?`. */
export function numberPlaceholders(sql: string): string {
  let index = 0;
  return sql.replace(/\?/g, () => `$${++index}`);
}
