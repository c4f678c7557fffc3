// Date-time request fields, normalized to the form CDIL stores.
import { AppError } from '../services/errors.ts';

/**
 * Normalizes an RFC 3339 date-time to the stored UTC form. Some values the schema accepts,
 * such as a leap second (23:59:60), have no JavaScript Date, so they are rejected here.
 */
export function toUtcInstant(field: string, value: string | undefined): string | undefined {
  if (value === undefined) {
    return undefined;
  }
  const instant = new Date(value);
  if (Number.isNaN(instant.getTime())) {
    throw new AppError('VALIDATION_FAILED', `${field} is not a date-time CDIL can compare`, {
      details: [
        { field, rule: 'format', message: 'must be an ISO 8601 date-time without leap seconds' },
      ],
    });
  }
  return instant.toISOString();
}
