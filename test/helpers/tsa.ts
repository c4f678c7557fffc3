// Local RFC 3161 timestamp authorities for tests. Each one gets its own root CA and TSA
// certificate (EC P-256), made with the openssl command line in a temporary folder, and serves
// POST application/timestamp-query on 127.0.0.1 by running `openssl ts -reply`. Every TSA uses
// the same subject names, so a token from one TSA names the issuer that another TSA's root has:
// only the keys tell them apart.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TSA_POLICY = '1.3.6.1.4.1.99999.1';
const ROOT_SUBJECT = '/O=CDIL Test/CN=CDIL Test Root CA';
const TSA_SUBJECT = '/O=CDIL Test/CN=CDIL Test TSA';
const OPENSSL_TIMEOUT_MS = 5_000;
const MAX_QUERY_BYTES = 64 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface LocalTsaOptions {
  /** Start of the TSA certificate's validity; defaults to one day before now. */
  tsaNotBefore?: Date;
  /** End of the TSA certificate's validity; defaults to 365 days after now. */
  tsaNotAfter?: Date;
  /** Hash in the ESS attribute: `sha1` makes SigningCertificate, `sha256` SigningCertificateV2. */
  essCertIdAlgorithm?: 'sha1' | 'sha256';
  /** Message imprint algorithms the TSA accepts (`digests` in the openssl ts section). */
  acceptedDigests?: string[];
  /**
   * Whether the TSA certificate names its issuer's key (authorityKeyIdentifier); default true.
   * Without it, path building can match issuers by name only.
   */
  authorityKeyIdentifier?: boolean;
}

export interface IssuedResponse {
  /** DER TimeStampResp as the TSA sent it. */
  response: Uint8Array;
  /** DER TimeStampToken (CMS ContentInfo) cut out of the response by `openssl ts -token_out`. */
  token: Uint8Array;
}

export interface LocalTsa {
  /** URL that accepts timestamp queries over HTTP. */
  url: string;
  rootPem: string;
  tsaCertificatePem: string;
  /** PEM file with the root certificate, for `openssl ts -verify -CAfile`. */
  rootPemPath: string;
  dir: string;
  /** Number of HTTP queries that got a reply from openssl. */
  readonly requestCount: number;
  /** Timestamps `data` with openssl directly, without HTTP. */
  issue(data: Uint8Array): Promise<IssuedResponse>;
  /**
   * Issues another certificate from the same root for the TSA's key (next serial number), to
   * test that a token is bound to one certificate and not just to a key. Returns its PEM.
   */
  issueSiblingCertificate(): Promise<string>;
  close(): Promise<void>;
}

function runOpenssl(args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'openssl',
      args,
      { cwd, timeout: OPENSSL_TIMEOUT_MS, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`openssl ${args.join(' ')} failed: ${stderr || error.message}`));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

/** Formats a date as the GeneralizedTime that `openssl ca -startdate` accepts. */
function opensslDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:T]/g, '')
    .replace(/\.\d{3}/, '');
}

function opensslConfig(options: LocalTsaOptions): string {
  const digests = options.acceptedDigests ?? ['sha256', 'sha384', 'sha512'];
  return `[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = unused

[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[v3_tsa]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
${options.authorityKeyIdentifier === false ? '' : 'authorityKeyIdentifier = keyid'}

[ca]
default_ca = test_ca

[test_ca]
database = ./ca-index.txt
new_certs_dir = .
certificate = ./root.pem
private_key = ./root.key
serial = ./ca-serial
default_md = sha256
policy = ca_policy
unique_subject = no
copy_extensions = none

[ca_policy]
organizationName = supplied
commonName = supplied

[tsa]
default_tsa = tsa_config1

[tsa_config1]
dir = .
serial = ./tsa-serial
crypto_device = builtin
signer_cert = ./tsa.pem
certs = ./root.pem
signer_key = ./tsa.key
signer_digest = sha256
default_policy = ${TSA_POLICY}
digests = ${digests.join(', ')}
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = ${options.essCertIdAlgorithm ?? 'sha256'}
`;
}

async function createCertificates(dir: string, options: LocalTsaOptions): Promise<void> {
  writeFileSync(join(dir, 'openssl.cnf'), opensslConfig(options));
  writeFileSync(join(dir, 'ca-index.txt'), '');
  writeFileSync(join(dir, 'ca-serial'), '1000\n');
  writeFileSync(join(dir, 'tsa-serial'), '01\n');
  const config = ['-config', 'openssl.cnf'];
  await runOpenssl(
    ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'root.key'],
    dir,
  );
  await runOpenssl(
    [
      'req',
      ...config,
      '-new',
      '-x509',
      '-key',
      'root.key',
      '-subj',
      ROOT_SUBJECT,
      '-days',
      '3650',
      '-extensions',
      'v3_ca',
      '-out',
      'root.pem',
    ],
    dir,
  );
  await runOpenssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'tsa.key'], dir);
  await runOpenssl(
    ['req', ...config, '-new', '-key', 'tsa.key', '-subj', TSA_SUBJECT, '-out', 'tsa.csr'],
    dir,
  );
  await issueTsaCertificate(dir, options, 'tsa.pem');
}

/**
 * Signs tsa.csr with the root into `out`. Uses `openssl ca` rather than `openssl x509 -req`,
 * because OpenSSL 3.0 can set explicit validity dates only there, and the tests need expired
 * and not-yet-valid TSA certificates.
 */
async function issueTsaCertificate(
  dir: string,
  options: LocalTsaOptions,
  out: string,
): Promise<void> {
  const now = Date.now();
  await runOpenssl(
    [
      'ca',
      '-config',
      'openssl.cnf',
      '-batch',
      '-notext',
      '-in',
      'tsa.csr',
      '-startdate',
      opensslDate(options.tsaNotBefore ?? new Date(now - DAY_MS)),
      '-enddate',
      opensslDate(options.tsaNotAfter ?? new Date(now + 365 * DAY_MS)),
      '-extensions',
      'v3_tsa',
      '-out',
      out,
    ],
    dir,
  );
}

/**
 * Runs one query through `openssl ts -reply`. Queries are serialized by the caller because
 * openssl reads and rewrites the serial number file without a lock.
 */
async function replyToQuery(dir: string, query: Uint8Array, name: string): Promise<Uint8Array> {
  const queryFile = join(dir, `${name}.tsq`);
  const replyFile = join(dir, `${name}.tsr`);
  writeFileSync(queryFile, query);
  await runOpenssl(
    [
      'ts',
      '-reply',
      '-config',
      'openssl.cnf',
      '-section',
      'tsa_config1',
      '-queryfile',
      queryFile,
      '-out',
      replyFile,
    ],
    dir,
  );
  return readFileSync(replyFile);
}

function readBody(request: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve(undefined);
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${port}/tsa`);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Creates a root CA and a TSA certificate and serves timestamp queries on 127.0.0.1. */
export async function startLocalTsa(options: LocalTsaOptions = {}): Promise<LocalTsa> {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-tsa-'));
  try {
    await createCertificates(dir, options);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  let queue: Promise<unknown> = Promise.resolve();
  let counter = 0;
  const serialize = <T>(work: () => Promise<T>): Promise<T> => {
    const result = queue.then(work, work);
    queue = result.catch(() => undefined);
    return result;
  };

  let requestCount = 0;
  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    if (request.method !== 'POST') {
      response.writeHead(405, { allow: 'POST' }).end();
      return;
    }
    if (request.headers['content-type'] !== 'application/timestamp-query') {
      response.writeHead(415).end();
      return;
    }
    const query = await readBody(request, MAX_QUERY_BYTES);
    if (query === undefined) {
      response.writeHead(413).end();
      return;
    }
    try {
      const reply = await serialize(() => replyToQuery(dir, query, `http-${counter++}`));
      requestCount++;
      response.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(reply);
    } catch (error) {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
    }
  };
  const server = createServer((request, response) => {
    handle(request, response).catch(() => response.destroy());
  });
  const url = await listen(server);

  return {
    url,
    rootPem: readFileSync(join(dir, 'root.pem'), 'utf8'),
    tsaCertificatePem: readFileSync(join(dir, 'tsa.pem'), 'utf8'),
    rootPemPath: join(dir, 'root.pem'),
    dir,
    get requestCount() {
      return requestCount;
    },
    issue: (data) =>
      serialize(async () => {
        const name = `direct-${counter++}`;
        writeFileSync(join(dir, `${name}.data`), data);
        await runOpenssl(
          [
            'ts',
            '-query',
            '-config',
            'openssl.cnf',
            '-data',
            `${name}.data`,
            '-sha256',
            '-cert',
            '-out',
            `${name}.tsq`,
          ],
          dir,
        );
        const response = await replyToQuery(dir, readFileSync(join(dir, `${name}.tsq`)), name);
        await runOpenssl(
          [
            'ts',
            '-reply',
            '-config',
            'openssl.cnf',
            '-in',
            `${name}.tsr`,
            '-token_out',
            '-out',
            `${name}.tok`,
          ],
          dir,
        );
        return { response, token: readFileSync(join(dir, `${name}.tok`)) };
      }),
    issueSiblingCertificate: () =>
      serialize(async () => {
        const out = `sibling-${counter++}.pem`;
        await issueTsaCertificate(dir, options, out);
        return readFileSync(join(dir, out), 'utf8');
      }),
    close: async () => {
      await closeServer(server);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `openssl ts -verify` on a response or token (`tokenIn`) against the data and a root PEM
 * file. Returns whether openssl printed "Verification: OK".
 */
export async function verifyWithOpenssl(
  tsa: LocalTsa,
  der: Uint8Array,
  data: Uint8Array,
  options: { tokenIn: boolean; rootPemPath?: string },
): Promise<boolean> {
  const name = `verify-${Math.random().toString(16).slice(2)}`;
  writeFileSync(join(tsa.dir, `${name}.der`), der);
  writeFileSync(join(tsa.dir, `${name}.data`), data);
  const args = [
    'ts',
    '-verify',
    '-config',
    'openssl.cnf',
    '-in',
    `${name}.der`,
    '-data',
    `${name}.data`,
    '-CAfile',
    options.rootPemPath ?? tsa.rootPemPath,
  ];
  if (options.tokenIn) {
    args.push('-token_in');
  }
  try {
    const stdout = await runOpenssl(args, tsa.dir);
    return stdout.includes('Verification: OK');
  } catch {
    // openssl exits 1 and prints "Verification: FAILED" when any check fails.
    return false;
  }
}

export interface FakeServer {
  url: string;
  close(): Promise<void>;
}

/** Starts a server on 127.0.0.1 that reads each request and never sends a response. */
export async function startSilentServer(): Promise<FakeServer> {
  const server = createServer((request) => {
    request.resume();
  });
  const url = await listen(server);
  return { url, close: () => closeServer(server) };
}

/**
 * Starts a server on 127.0.0.1 that sends a 200 timestamp-reply header and the first bytes of
 * a body, then stalls without ending the response.
 */
export async function startStallingServer(): Promise<FakeServer> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/timestamp-reply' });
      response.write(Buffer.from([0x30, 0x82]));
    });
  });
  const url = await listen(server);
  return { url, close: () => closeServer(server) };
}

export interface CannedResponse {
  body: Uint8Array;
  /** HTTP status; default 200. */
  status?: number;
  /** Response headers; default content-type application/timestamp-reply. */
  headers?: Record<string, string>;
}

/**
 * Starts a server on 127.0.0.1 that sends the same response to every request, for example
 * a recorded TimeStampResp replayed to later queries.
 */
export async function startReplayServer(canned: CannedResponse): Promise<FakeServer> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response
        .writeHead(
          canned.status ?? 200,
          canned.headers ?? { 'content-type': 'application/timestamp-reply' },
        )
        .end(canned.body);
    });
  });
  const url = await listen(server);
  return { url, close: () => closeServer(server) };
}

/** Returns a URL on 127.0.0.1 whose port had a listener a moment ago and now has none. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  const url = await listen(server);
  await closeServer(server);
  return url;
}

/**
 * Creates a self-signed EC P-256 certificate with the given extensions (openssl `-addext`
 * syntax, for example `extendedKeyUsage = critical, timeStamping`) and returns its PEM.
 */
export async function createCertificate(subject: string, extensions: string[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'cdil-cert-'));
  try {
    writeFileSync(join(dir, 'openssl.cnf'), '[req]\ndistinguished_name = req_dn\n[req_dn]\n');
    await runOpenssl(
      ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'key.pem'],
      dir,
    );
    const args = ['req', '-config', 'openssl.cnf', '-new', '-x509', '-key', 'key.pem'];
    args.push('-subj', subject, '-days', '30', '-out', 'cert.pem');
    for (const extension of extensions) {
      args.push('-addext', extension);
    }
    await runOpenssl(args, dir);
    return readFileSync(join(dir, 'cert.pem'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
