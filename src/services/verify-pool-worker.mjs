// Worker-thread entry of the bundle verifier pool: loads the TypeScript worker through tsx,
// because loader hooks registered in the main thread do not reach worker threads.
import { register } from 'tsx/esm/api';

register();
await import('./verify-pool-worker.ts');
