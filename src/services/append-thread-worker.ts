// The SQLite append thread itself (see append-thread.ts): opens its own connection to the
// database and runs each append it is sent, one at a time, sealing with the keys sent along.
import { parentPort, workerData } from 'node:worker_threads';
import { SoftwareSigner } from '../keys/signer.ts';
import { SqliteStore } from '../storage/sqlite/sqlite-store.ts';
import { StoreBusyError, StoreFullError, type AppendItem } from '../storage/store.ts';
import type {
  AppendThreadData,
  AppendThreadReply,
  AppendThreadRequest,
  ThreadErrorKind,
  ThreadItem,
} from './append-thread.ts';
import { sealCertificate } from './seal.ts';

if (parentPort === null) {
  throw new Error('append-thread-worker runs only as a worker thread');
}
const port = parentPort;
const data = workerData as AppendThreadData;

/** Opens the thread's connection, or reports why it could not and returns undefined. */
function openStore(): SqliteStore | undefined {
  try {
    return new SqliteStore(data.path, {
      busyTimeoutMs: data.busyTimeoutMs,
      maxPageCount: data.maxPageCount,
    });
  } catch (error) {
    port.postMessage({
      type: 'start-failed',
      message: messageOf(error),
    } satisfies AppendThreadReply);
    return undefined;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type Item = AppendItem & Omit<ThreadItem, 'auditEvent'>;

function errorKind(error: unknown): ThreadErrorKind {
  if (error instanceof StoreBusyError) {
    return 'busy';
  }
  return error instanceof StoreFullError ? 'full' : 'other';
}

async function append(
  store: SqliteStore,
  request: Extract<AppendThreadRequest, { type: 'append' }>,
): Promise<AppendThreadReply> {
  const signers = new Map<string, SoftwareSigner>();
  for (const { tenantId, keyId, key } of request.keys) {
    signers.set(`${tenantId}\n${keyId}`, new SoftwareSigner(keyId, key));
  }
  const groups = request.groups.map(({ tenantId, items }) => ({
    tenantId,
    items: items.map((item): Item => {
      const event = item.auditEvent;
      return { ...item, auditEvent: event === undefined ? undefined : () => event };
    }),
  }));
  try {
    const results = await store.appendCertificateGroups(groups, (item, link) => {
      const { tenant_id: tenantId, key_id: keyId } = item.message;
      const signer = signers.get(`${tenantId}\n${keyId}`);
      if (signer === undefined) {
        throw new Error(`no signing key ${keyId} of tenant ${tenantId} was sent with the append`);
      }
      return {
        ...sealCertificate(item.message, link, new Date().toISOString(), signer),
        timestamp_token: item.timestampToken,
      };
    });
    return { type: 'appended', id: request.id, results };
  } catch (error) {
    const failure = { kind: errorKind(error), message: messageOf(error) };
    return { type: 'appended', id: request.id, error: failure };
  }
}

const store = openStore();
if (store === undefined) {
  // The appends queued on the port were never read, so none of them ran.
  port.close();
} else {
  // Appends run one after another: a later one waits while an earlier one pauses for the lock.
  let queue = Promise.resolve();
  port.on('message', (request: AppendThreadRequest) => {
    queue = queue.then(async () => {
      if (request.type === 'close') {
        await store.close();
        port.close();
        return;
      }
      port.postMessage(await append(store, request));
    });
  });
  port.postMessage({ type: 'ready' } satisfies AppendThreadReply);
}
