// Object identifiers and algorithm tables for RFC 3161 timestamps (RFC 3161, RFC 5652 CMS,
// RFC 5035 and RFC 5816 ESS signing-certificate attributes).

export const OID = {
  signedData: '1.2.840.113549.1.7.2',
  data: '1.2.840.113549.1.7.1',
  tstInfo: '1.2.840.113549.1.9.16.1.4',
  contentTypeAttribute: '1.2.840.113549.1.9.3',
  signingCertificate: '1.2.840.113549.1.9.16.2.12',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  extendedKeyUsage: '2.5.29.37',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
  subjectAltName: '2.5.29.17',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
} as const;

/** WebCrypto name of a hash algorithm. */
export type HashAlgorithmName = 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';

const HASH_BY_OID: Record<string, { name: HashAlgorithmName; length: number }> = {
  [OID.sha1]: { name: 'SHA-1', length: 20 },
  [OID.sha256]: { name: 'SHA-256', length: 32 },
  [OID.sha384]: { name: 'SHA-384', length: 48 },
  [OID.sha512]: { name: 'SHA-512', length: 64 },
};

/** Returns the hash algorithm for an OID, or undefined for an unknown one. */
export function hashAlgorithmByOid(
  oid: string,
): { name: HashAlgorithmName; length: number } | undefined {
  return HASH_BY_OID[oid];
}

/**
 * Signature algorithms accepted on a token's SignerInfo: ECDSA and RSA with SHA-2. SHA-1 and
 * MD5 based algorithms are rejected because a collision would let one signature cover two
 * different sets of signed attributes.
 */
export const ACCEPTED_SIGNATURE_ALGORITHMS: ReadonlySet<string> = new Set([
  '1.2.840.10045.4.3.2', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3', // ecdsa-with-SHA384
  '1.2.840.10045.4.3.4', // ecdsa-with-SHA512
  '1.2.840.113549.1.1.1', // rsaEncryption, hashed with the SignerInfo digest algorithm
  '1.2.840.113549.1.1.10', // RSASSA-PSS
  '1.2.840.113549.1.1.11', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12', // sha384WithRSAEncryption
  '1.2.840.113549.1.1.13', // sha512WithRSAEncryption
]);

/** Digest algorithms accepted for the message imprint and the SignerInfo digest. */
export const ACCEPTED_DIGEST_OIDS: ReadonlySet<string> = new Set([
  OID.sha256,
  OID.sha384,
  OID.sha512,
]);
