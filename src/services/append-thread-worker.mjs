// Thread entry of the SQLite append thread: loads the TypeScript module through tsx, because
// loader hooks registered in the main thread do not reach worker threads.
import { register } from 'tsx/esm/api';

register();
await import('./append-thread-worker.ts');
