// Building RFC 3161 TimeStampReq messages (section 2.4.1).
import * as asn1js from 'asn1js';
import { AlgorithmIdentifier, MessageImprint, TimeStampReq } from 'pkijs';
import { OID } from './oids.ts';

export interface TimeStampRequestFields {
  /** SHA-256 digest of the data to timestamp. */
  sha256: Uint8Array;
  /** Nonce as unsigned big-endian bytes; the TSA must echo it in the token. */
  nonce: Uint8Array;
  /** Ask the TSA to include its certificate, which offline verification needs. */
  certReq: boolean;
}

/** Encodes unsigned big-endian bytes as the content of a minimal DER INTEGER. */
function unsignedIntegerContent(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) {
    start++;
  }
  const trimmed = bytes.subarray(start);
  if (trimmed.length === 0 || (trimmed[0]! & 0x80) !== 0) {
    const padded = new Uint8Array(trimmed.length + 1);
    padded.set(trimmed, 1);
    return padded;
  }
  return trimmed;
}

/** Builds a DER TimeStampReq (version 1) with a SHA-256 message imprint. */
export function buildTimeStampRequest(fields: TimeStampRequestFields): Uint8Array {
  if (fields.sha256.length !== 32) {
    throw new TypeError(`SHA-256 digest must be 32 bytes, got ${fields.sha256.length}`);
  }
  const request = new TimeStampReq({
    version: 1,
    messageImprint: new MessageImprint({
      hashAlgorithm: new AlgorithmIdentifier({
        algorithmId: OID.sha256,
        algorithmParams: new asn1js.Null(),
      }),
      hashedMessage: new asn1js.OctetString({ valueHex: fields.sha256 }),
    }),
    nonce: new asn1js.Integer({ valueHex: unsignedIntegerContent(fields.nonce) }),
    certReq: fields.certReq,
  });
  return new Uint8Array(request.toSchema().toBER());
}
