// The per-tenant Merkle log as a service: checkpoint signing and publication, inclusion and
// consistency proofs. The store appends leaves in the same transaction as the certificate or
// audit event they record, so this service only reads the log and signs its state.
import { createPrivateKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import {
  createVerifierKey,
  formatCheckpoint,
  formatVerifierKey,
  signNote,
} from '../core/checkpoint.ts';
import { nodeCrypto } from '../core/crypto-node.ts';
import { fromBase64, fromHex, toBase64, toHex, utf8Encode } from '../core/encoding.ts';
import {
  buildConsistencyProof,
  buildInclusionProof,
  consistencyProofRefs,
  inclusionProofRefs,
  nodeKey,
  rootFromFrontier,
  type NodeRef,
} from '../core/merkle.ts';
import { openSecret, sealSecret } from '../keys/envelope.ts';
import { decodeFrontier } from '../storage/log-append.ts';
import type { LogEvidence } from '../core/verify/log-steps.ts';
import type {
  CertificateRow,
  CheckpointRow,
  LogKeyRow,
  LogNodeRow,
  Store,
} from '../storage/store.ts';
import type { Clock } from './clock.ts';
import type { TimestampAuthority } from './tsa-client.ts';
import { AppError } from './errors.ts';

export interface LogKeyInfo {
  key_name: string;
  /** Verifier key in signed-note form: `<name>+<key id hex>+<base64(0x01 || public key)>`. */
  verifier_key: string;
  public_key: string;
}

export interface InclusionProof {
  log_index: number;
  tree_size: number;
  /** Audit path, leaf to root, base64 hashes. */
  proof: string[];
  checkpoint: string;
  /** RFC 3161 token over the checkpoint text, base64 DER, when the TSA gave one. */
  checkpoint_timestamp: string | null;
}

export interface ConsistencyProof {
  from_size: number;
  to_size: number;
  proof: string[];
}

const ED25519_SPKI_PREFIX_LENGTH = 12;

function logKeyAad(tenantId: string): string {
  return `cdil:log-key:${tenantId}`;
}

function nodeMap(rows: readonly LogNodeRow[]): Map<string, Uint8Array> {
  return new Map(
    rows.map((row) => [nodeKey({ level: row.level, index: row.node_index }), fromHex(row.hash)]),
  );
}

export interface TransparencyLogOptions {
  store: Store;
  kek: Uint8Array;
  clock: Clock;
  /** Prefix of each tenant's log origin; the origin is `<prefix>/tenants/<tenant id>`. */
  originPrefix: string;
  /** Timestamps each checkpoint when set. */
  tsa?: TimestampAuthority | undefined;
  /** Reports a best-effort timestamp that failed and will be retried. */
  onTimestampFailure?: (error: unknown, context: Record<string, unknown>) => void;
}

/**
 * Describes an error with the code and message of it and each of its causes, for example
 * "TIMESTAMP_UNAVAILABLE: the time-stamping authority ...: TSA_UNREACHABLE: ...".
 */
export function describeFailure(error: unknown): string {
  const parts: string[] = [];
  for (let current: unknown = error; current !== undefined && parts.length < 8;) {
    if (current instanceof Error) {
      const code = (current as { code?: unknown }).code;
      parts.push(typeof code === 'string' ? `${code}: ${current.message}` : current.message);
      current = current.cause;
    } else {
      parts.push(inspect(current, { depth: 1, breakLength: Infinity }));
      current = undefined;
    }
  }
  return parts.join(': ');
}

/** Callbacks for the failures and recoveries of the checkpoint publisher (startPublisher). */
export interface PublisherReport {
  /**
   * Called when publication or a timestamp retry starts failing for a tenant, or fails with
   * another error or cause (see describeFailure).
   */
  failed(error: unknown, tenantId: string | undefined): void;
  /** Called when a tenant that was reported as failing succeeds again. */
  recovered?(tenantId: string | undefined): void;
}

export class TransparencyLog {
  readonly #store: Store;
  readonly #kek: Uint8Array;
  readonly #clock: Clock;
  readonly #originPrefix: string;
  readonly #tsa: TimestampAuthority | undefined;
  readonly #onTimestampFailure: (error: unknown, context: Record<string, unknown>) => void;
  readonly #signers = new Map<string, { row: LogKeyRow; privateKey: KeyObject }>();

  constructor(options: TransparencyLogOptions) {
    this.#store = options.store;
    this.#kek = options.kek;
    this.#clock = options.clock;
    this.#originPrefix = options.originPrefix;
    this.#tsa = options.tsa;
    this.#onTimestampFailure = options.onTimestampFailure ?? (() => undefined);
  }

  originFor(tenantId: string): string {
    return `${this.#originPrefix}/tenants/${tenantId}`;
  }

  /** Returns the tenant's log key, creating it on first use. Safe to race across processes. */
  async ensureKey(tenantId: string): Promise<LogKeyRow> {
    const existing = await this.#store.getLogKey(tenantId);
    if (existing) {
      return existing;
    }
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    return this.#store.putLogKey({
      tenant_id: tenantId,
      key_name: this.originFor(tenantId),
      public_key: toBase64(spki.subarray(ED25519_SPKI_PREFIX_LENGTH)),
      private_key_sealed: sealSecret(this.#kek, pkcs8, logKeyAad(tenantId)),
      created_at: this.#clock.now().toISOString(),
    });
  }

  async #signer(tenantId: string): Promise<{ row: LogKeyRow; privateKey: KeyObject }> {
    let signer = this.#signers.get(tenantId);
    if (!signer) {
      const row = await this.ensureKey(tenantId);
      const pkcs8 = openSecret(this.#kek, row.private_key_sealed, logKeyAad(tenantId));
      signer = {
        row,
        privateKey: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }),
      };
      this.#signers.set(tenantId, signer);
    }
    return signer;
  }

  async keyInfo(tenantId: string): Promise<LogKeyInfo> {
    const row = await this.#requireKey(tenantId);
    return {
      key_name: row.key_name,
      verifier_key: verifierKeyText(row),
      public_key: row.public_key,
    };
  }

  async #requireKey(tenantId: string): Promise<LogKeyRow> {
    if (!(await this.#store.getTenant(tenantId))) {
      throw new AppError('TENANT_NOT_FOUND', 'tenant not found');
    }
    return this.ensureKey(tenantId);
  }

  /**
   * Signs and stores a checkpoint of the log's current state, unless the latest checkpoint
   * already has that size, and returns the stored checkpoint.
   */
  async publish(tenantId: string): Promise<CheckpointRow> {
    const head = (await this.#store.getLogHead(tenantId)) ?? { tree_size: 0, frontier: '' };
    const latest = await this.#store.getLatestCheckpoint(tenantId);
    if (latest && latest.tree_size >= head.tree_size) {
      return latest;
    }
    const { row, privateKey } = await this.#signer(tenantId);
    const root = rootFromFrontier(nodeCrypto, decodeFrontier(head.frontier));
    const body = formatCheckpoint({
      origin: row.key_name,
      size: head.tree_size,
      rootHash: root,
      extensions: [],
    });
    const note = signNote(
      nodeCrypto,
      body,
      row.key_name,
      (message: Uint8Array) => sign(null, message, privateKey),
      fromBase64(row.public_key)!,
    );
    const token = await this.#timestampCheckpoint(tenantId, note);
    return this.#store.putCheckpoint({
      tenant_id: tenantId,
      tree_size: head.tree_size,
      root_hash: toHex(root),
      note,
      published_at: this.#clock.now().toISOString(),
      timestamp_token: token === undefined ? null : toBase64(token),
      timestamp_attempts: this.#tsa ? 1 : 0,
    });
  }

  /**
   * Timestamps a checkpoint text when a TSA is configured. A failure fails the publication for
   * a tenant whose policy is `required`; otherwise the checkpoint is stored without a token and
   * retryTimestamps requests a token again later.
   */
  async #timestampCheckpoint(tenantId: string, note: string): Promise<Uint8Array | undefined> {
    if (!this.#tsa) {
      return undefined;
    }
    try {
      return await this.#tsa.timestamp(utf8Encode(note));
    } catch (error) {
      const tenant = await this.#store.getTenant(tenantId);
      if (tenant?.timestamp_policy === 'required') {
        throw new AppError(
          'TIMESTAMP_UNAVAILABLE',
          'the time-stamping authority did not timestamp the checkpoint; retry later',
          { cause: error },
        );
      }
      this.#onTimestampFailure(error, { tenantId });
      return undefined;
    }
  }

  /**
   * Requests tokens again for checkpoints stored without one and returns how many got one.
   * Failures go to `onFailure`, by default the onTimestampFailure option.
   */
  async retryTimestamps(
    limit = 20,
    onFailure: (error: unknown, context: Record<string, unknown>) => void = this
      .#onTimestampFailure,
  ): Promise<number> {
    if (!this.#tsa) {
      return 0;
    }
    let stamped = 0;
    for (const checkpoint of await this.#store.listUntimestampedCheckpoints(limit)) {
      let token: string | null = null;
      try {
        token = toBase64(await this.#tsa.timestamp(utf8Encode(checkpoint.note)));
        stamped += 1;
      } catch (error) {
        onFailure(error, { tenantId: checkpoint.tenant_id, treeSize: checkpoint.tree_size });
      }
      await this.#store.setCheckpointTimestamp(checkpoint.tenant_id, checkpoint.tree_size, token);
    }
    return stamped;
  }

  /**
   * Publishes a checkpoint for every tenant whose log grew since its latest checkpoint and
   * returns how many were published. A failing tenant does not stop the others: its error goes
   * to `onFailure` when given, and is raised after the loop otherwise.
   */
  async publishGrown(onFailure?: (tenantId: string, error: unknown) => void): Promise<number> {
    let published = 0;
    const failures: unknown[] = [];
    for (const tenant of await this.#store.listTenants()) {
      try {
        const head = await this.#store.getLogHead(tenant.tenant_id);
        const latest = await this.#store.getLatestCheckpoint(tenant.tenant_id);
        if (head && head.tree_size > (latest?.tree_size ?? -1)) {
          await this.publish(tenant.tenant_id);
          published += 1;
        }
      } catch (error) {
        if (onFailure) {
          onFailure(tenant.tenant_id, error);
        } else {
          failures.push(error);
        }
      }
    }
    if (failures.length === 1) {
      throw failures[0];
    }
    if (failures.length > 1) {
      throw new AggregateError(
        failures,
        `checkpoint publication failed for ${failures.length} tenants`,
      );
    }
    return published;
  }

  /**
   * Publishes grown logs and retries missing timestamps every `intervalMs` until stopped. Every
   * process may run one: a checkpoint is stored once per size, so concurrent publishers agree.
   * A failure is reported once per tenant until its description (describeFailure) changes or
   * the tenant succeeds again, so a TSA that stays down produces one report, not one per tick.
   */
  startPublisher(intervalMs: number, report: PublisherReport): { stop(): Promise<void> } {
    const failing = new Map<string, string>();
    const fail = (key: string, tenantId: string | undefined, error: unknown) => {
      const message = describeFailure(error);
      if (failing.get(key) !== message) {
        failing.set(key, message);
        report.failed(error, tenantId);
      }
    };
    const tick = async () => {
      const failedNow = new Set<string>();
      const tenantFailed = (prefix: string) => (tenantId: string | undefined, error: unknown) => {
        const key = `${prefix}:${tenantId ?? ''}`;
        failedNow.add(key);
        fail(key, tenantId, error);
      };
      try {
        await this.publishGrown(tenantFailed('publish'));
        const timestampFailed = tenantFailed('timestamp');
        await this.retryTimestamps(undefined, (error, context) =>
          timestampFailed(context.tenantId as string | undefined, error),
        );
      } catch (error) {
        const key = 'publisher:';
        failedNow.add(key);
        fail(key, undefined, error);
      }
      for (const key of [...failing.keys()]) {
        if (!failedNow.has(key)) {
          failing.delete(key);
          report.recovered?.(key.slice(key.indexOf(':') + 1) || undefined);
        }
      }
    };
    let running: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      running = running.then(tick);
    }, intervalMs);
    timer.unref();
    return {
      stop: async () => {
        clearInterval(timer);
        await running;
      },
    };
  }

  /** Returns the latest checkpoint, publishing one when there is none yet. */
  async latest(tenantId: string): Promise<CheckpointRow> {
    await this.#requireKey(tenantId);
    return (await this.#store.getLatestCheckpoint(tenantId)) ?? this.publish(tenantId);
  }

  async checkpointAt(tenantId: string, treeSize: number): Promise<CheckpointRow> {
    await this.#requireKey(tenantId);
    const found = await this.#store.getCheckpoint(tenantId, treeSize);
    if (!found) {
      throw new AppError('CHECKPOINT_NOT_FOUND', `no checkpoint of size ${treeSize}`);
    }
    return found;
  }

  /** Returns a checkpoint that includes leaf `index`: the latest, or a new one when it is too old. */
  async checkpointCovering(tenantId: string, index: number): Promise<CheckpointRow> {
    const latest = await this.#store.getLatestCheckpoint(tenantId);
    return latest && latest.tree_size > index ? latest : this.publish(tenantId);
  }

  async #nodes(tenantId: string, refs: readonly NodeRef[]): Promise<Map<string, Uint8Array>> {
    const rows = await this.#store.getLogNodes(tenantId, refs);
    const found = nodeMap(rows);
    if (found.size !== new Set(refs.map(nodeKey)).size) {
      throw new Error(`log of tenant ${tenantId} is missing nodes a proof needs`);
    }
    return found;
  }

  /**
   * Returns the inclusion proof of leaf `index` for a caller that names the index: raises
   * LEAF_NOT_FOUND (404) for an index past the log's end, instead of publishing a checkpoint.
   */
  async leafInclusion(tenantId: string, index: number, treeSize?: number): Promise<InclusionProof> {
    await this.#requireKey(tenantId);
    const head = await this.#store.getLogHead(tenantId);
    if (index >= (head?.tree_size ?? 0)) {
      throw new AppError(
        'LEAF_NOT_FOUND',
        `the log has ${head?.tree_size ?? 0} leaves, so there is no leaf ${index}`,
      );
    }
    return this.inclusionProof(tenantId, index, treeSize);
  }

  /** Inclusion proof of leaf `index` against the checkpoint of `treeSize` (default: covering). */
  async inclusionProof(
    tenantId: string,
    index: number,
    treeSize?: number,
  ): Promise<InclusionProof> {
    const checkpoint =
      treeSize === undefined
        ? await this.checkpointCovering(tenantId, index)
        : await this.checkpointAt(tenantId, treeSize);
    if (index >= checkpoint.tree_size) {
      throw new AppError(
        'VALIDATION_FAILED',
        `leaf ${index} is not in the checkpoint of size ${checkpoint.tree_size}`,
      );
    }
    const refs = inclusionProofRefs(index, checkpoint.tree_size);
    const nodes = await this.#nodes(tenantId, refs);
    const proof = buildInclusionProof(nodeCrypto, index, checkpoint.tree_size, nodes);
    return {
      log_index: index,
      tree_size: checkpoint.tree_size,
      proof: proof.map(toBase64),
      checkpoint: checkpoint.note,
      checkpoint_timestamp: checkpoint.timestamp_token,
    };
  }

  /**
   * Builds the audit paths of several leaves in the tree of `treeSize` leaves, reading every node
   * they need in one batch. Returns one path per index, in the order given.
   */
  async inclusionPaths(
    tenantId: string,
    treeSize: number,
    indexes: readonly number[],
  ): Promise<Uint8Array[][]> {
    const refs = new Map<string, NodeRef>();
    for (const index of indexes) {
      for (const ref of inclusionProofRefs(index, treeSize)) {
        refs.set(nodeKey(ref), ref);
      }
    }
    const nodes = await this.#nodes(tenantId, [...refs.values()]);
    return indexes.map((index) => buildInclusionProof(nodeCrypto, index, treeSize, nodes));
  }

  /** Inclusion proof of a certificate's leaf. */
  async certificateInclusion(
    tenantId: string,
    certificateId: string,
    treeSize?: number,
  ): Promise<InclusionProof> {
    const row = await this.#store.getCertificate(tenantId, certificateId);
    if (!row) {
      throw new AppError('CERTIFICATE_NOT_FOUND', 'certificate not found');
    }
    if (row.log_index === null || row.log_index === undefined) {
      throw new Error(`certificate ${certificateId} has no log index`);
    }
    return this.inclusionProof(tenantId, row.log_index, treeSize);
  }

  /** The log evidence a bundle carries for a certificate. */
  async evidenceFor(
    tenantId: string,
    row: CertificateRow,
  ): Promise<{ log: LogEvidence; checkpointTimestamp: Uint8Array | undefined }> {
    if (row.log_index === null || row.log_index === undefined) {
      throw new Error(`certificate ${row.certificate_id} has no log index`);
    }
    const inclusion = await this.inclusionProof(tenantId, row.log_index);
    const key = await this.ensureKey(tenantId);
    return {
      log: {
        logIndex: inclusion.log_index,
        treeSize: inclusion.tree_size,
        proof: inclusion.proof.map((hash) => fromBase64(hash)!),
        checkpoint: inclusion.checkpoint,
        logKey: verifierKeyText(key),
      },
      checkpointTimestamp:
        inclusion.checkpoint_timestamp === null
          ? undefined
          : fromBase64(inclusion.checkpoint_timestamp),
    };
  }

  async consistencyProof(
    tenantId: string,
    fromSize: number,
    toSize: number,
  ): Promise<ConsistencyProof> {
    await this.#requireKey(tenantId);
    const head = await this.#store.getLogHead(tenantId);
    const size = head?.tree_size ?? 0;
    if (fromSize > toSize || toSize > size) {
      throw new AppError(
        'VALIDATION_FAILED',
        `sizes must satisfy 0 <= from <= to <= ${size} (the log size)`,
      );
    }
    const refs = consistencyProofRefs(fromSize, toSize);
    const nodes = await this.#nodes(tenantId, refs);
    const proof = buildConsistencyProof(nodeCrypto, fromSize, toSize, nodes);
    return { from_size: fromSize, to_size: toSize, proof: proof.map(toBase64) };
  }
}

export function verifierKeyText(row: LogKeyRow): string {
  return formatVerifierKey(
    createVerifierKey(nodeCrypto, row.key_name, fromBase64(row.public_key)!),
  );
}
