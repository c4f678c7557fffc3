// Outcomes of the writes of one process's database connections, in the order the process saw
// them, so that readiness after a full disk can tell whether any connection committed since the
// last failure. A shared counter orders them: two outcomes in one millisecond still compare.
let lastOrder = 0;

/** Returns the next position in the order of this process's write outcomes. */
export function nextWriteOrder(): number {
  lastOrder += 1;
  return lastOrder;
}

/** The last full-disk failure and the last commit of one connection. */
export interface WriteState {
  /** Time of the last write that failed on a full disk, cleared by the next commit. */
  failedAt: number | undefined;
  /** Position of that failure in nextWriteOrder's order. */
  failedOrder: number;
  /** Position of the last commit, 0 before the first. */
  committedOrder: number;
}

export const NO_WRITES: WriteState = { failedAt: undefined, failedOrder: 0, committedOrder: 0 };

/** Returns the state of a connection whose write just committed, which ends any failure. */
export function afterCommit(): WriteState {
  return { failedAt: undefined, failedOrder: 0, committedOrder: nextWriteOrder() };
}

/** Returns `state` after a write that just failed on a full disk. */
export function afterFullFailure(state: WriteState): WriteState {
  return { ...state, failedAt: Date.now(), failedOrder: nextWriteOrder() };
}

/**
 * Returns the time of the latest full-disk failure among `states`, unless a write committed on
 * any of the connections after it.
 */
export function lastFullFailure(states: readonly WriteState[]): number | undefined {
  let failure: WriteState | undefined;
  let committedOrder = 0;
  for (const state of states) {
    if (state.failedAt !== undefined && state.failedOrder > (failure?.failedOrder ?? 0)) {
      failure = state;
    }
    committedOrder = Math.max(committedOrder, state.committedOrder);
  }
  return failure !== undefined && failure.failedOrder > committedOrder
    ? failure.failedAt
    : undefined;
}
