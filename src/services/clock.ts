// Time source, injectable so tests can pin instants.
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
