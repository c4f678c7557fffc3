// Parsing of RFC 3161 TimeStampResp and TimeStampToken structures into pkijs objects, keeping
// the exact DER bytes that signatures and hashes cover.
import * as asn1js from 'asn1js';
import {
  Certificate,
  ContentInfo,
  SignedData,
  TimeStampResp,
  TSTInfo,
  type SignerInfo,
} from 'pkijs';
import { TimestampError, TimestampErrorCode } from '../errors.ts';
import { OID } from './oids.ts';

/** PKIStatus values of RFC 3161 section 2.4.2. */
export const PKI_STATUS_NAMES = [
  'granted',
  'grantedWithMods',
  'rejection',
  'waiting',
  'revocationWarning',
  'revocationNotification',
] as const;

/** PKIFailureInfo bit names of RFC 3161 section 2.4.2, by bit number. */
const FAILURE_INFO_BITS: Record<number, string> = {
  0: 'badAlg',
  2: 'badRequest',
  5: 'badDataFormat',
  14: 'timeNotAvailable',
  15: 'unacceptedPolicy',
  16: 'unacceptedExtension',
  17: 'addInfoNotAvailable',
  25: 'systemFailure',
};

export interface TimeStampResponse {
  /** PKIStatus number; 0 (granted) and 1 (grantedWithMods) carry a token. */
  status: number;
  /** Name of the status, or `unknown` for a value outside RFC 3161. */
  statusName: string;
  /** PKIFreeText strings the TSA sent with the status. */
  statusText: string[];
  /** Names of the PKIFailureInfo bits that are set. */
  failureInfo: string[];
  /** DER TimeStampToken exactly as the TSA sent it, when present. */
  token: Uint8Array | undefined;
}

/** A TimeStampToken split into the parts that verification looks at. */
export interface ParsedTimestampToken {
  /** DER ContentInfo of the token. */
  der: Uint8Array;
  signedData: SignedData;
  signerInfo: SignerInfo;
  tstInfo: TSTInfo;
  /** Certificates of the SignedData, each with its DER bytes as they appear in the token. */
  certificates: { der: Uint8Array; certificate: Certificate }[];
}

function malformed(message: string, cause?: unknown): TimestampError {
  return new TimestampError(TimestampErrorCode.MALFORMED, message, { cause });
}

/**
 * Rejects two encodings that asn1js accepts but DER forbids, so that one token has one byte
 * string. These are indefinite lengths, and constructed values whose declared length differs
 * from the length of their contents, because asn1js reads the contents and ignores the length.
 */
function checkLengths(block: asn1js.AsnType, structureName: string): void {
  if (block.lenBlock.isIndefiniteForm) {
    throw malformed(`${structureName} uses an indefinite length, which DER does not allow`);
  }
  if (!block.idBlock.isConstructed) {
    return;
  }
  const contentLength = block.blockLength - block.idBlock.blockLength - block.lenBlock.blockLength;
  if (block.lenBlock.length !== contentLength) {
    throw malformed(
      `${structureName} declares a length of ${block.lenBlock.length} bytes but contains ${contentLength}`,
    );
  }
  for (const child of (block as asn1js.Constructed).valueBlock.value) {
    checkLengths(child, structureName);
  }
}

/** Parses one complete DER value; trailing bytes and inconsistent lengths are errors. */
export function parseDer(der: Uint8Array, structureName: string): asn1js.AsnType {
  let parsed: ReturnType<typeof asn1js.fromBER>;
  try {
    parsed = asn1js.fromBER(der);
  } catch (error) {
    // asn1js throws, instead of reporting an error, for some malformed time values.
    throw malformed(`${structureName} is not valid DER`, error);
  }
  if (parsed.offset === -1) {
    throw malformed(`${structureName} is not valid DER: ${parsed.result.error}`);
  }
  if (parsed.offset !== der.byteLength) {
    throw malformed(
      `${structureName} has ${der.byteLength - parsed.offset} bytes after its DER value`,
    );
  }
  checkLengths(parsed.result, structureName);
  return parsed.result;
}

function bytesOf(block: asn1js.AsnType): Uint8Array {
  return new Uint8Array(block.valueBeforeDecodeView);
}

/**
 * Tells a TimeStampResp from a bare TimeStampToken. Both are SEQUENCEs, but a ContentInfo starts
 * with its content type OID while a TimeStampResp starts with the PKIStatusInfo SEQUENCE.
 */
function isTimeStampResp(root: asn1js.AsnType): boolean {
  return root instanceof asn1js.Sequence && root.valueBlock.value[0] instanceof asn1js.Sequence;
}

function decodeFailureInfo(bits: asn1js.BitString | undefined): string[] {
  if (!bits) {
    return [];
  }
  const bytes = bits.valueBlock.valueHexView;
  const names: string[] = [];
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! & (0x80 >> (bit & 7))) !== 0) {
      names.push(FAILURE_INFO_BITS[bit] ?? `bit ${bit}`);
    }
  }
  return names;
}

function readResponse(root: asn1js.AsnType): TimeStampResponse {
  let response: TimeStampResp;
  try {
    response = new TimeStampResp({ schema: root });
  } catch (error) {
    throw malformed('TimeStampResp does not match the RFC 3161 structure', error);
  }
  const status = response.status.status as number;
  const tokenBlock = (root as asn1js.Sequence).valueBlock.value[1];
  return {
    status,
    statusName: PKI_STATUS_NAMES[status] ?? 'unknown',
    statusText: (response.status.statusStrings ?? []).map((text) => text.valueBlock.value),
    failureInfo: decodeFailureInfo(response.status.failInfo),
    token: tokenBlock ? bytesOf(tokenBlock) : undefined,
  };
}

/** Parses a DER TimeStampResp (RFC 3161 section 2.4.2). */
export function parseTimeStampResponse(der: Uint8Array): TimeStampResponse {
  const root = parseDer(der, 'timestamp response');
  if (!isTimeStampResp(root)) {
    throw malformed('input is not a TimeStampResp');
  }
  return readResponse(root);
}

/**
 * Returns the DER TimeStampToken from either a TimeStampResp or a bare token. A response must
 * have status granted or grantedWithMods.
 */
export function extractTimestampToken(der: Uint8Array): Uint8Array {
  const root = parseDer(der, 'timestamp token');
  if (!isTimeStampResp(root)) {
    return der;
  }
  const response = readResponse(root);
  if (response.status !== 0 && response.status !== 1) {
    const details = [...response.statusText, ...response.failureInfo].join('; ');
    throw new TimestampError(
      TimestampErrorCode.NOT_GRANTED,
      `timestamp response has status ${response.statusName}${details ? ` (${details})` : ''}`,
    );
  }
  if (response.token === undefined) {
    throw malformed(`timestamp response has status ${response.statusName} but no token`);
  }
  return response.token;
}

function readTstInfo(signedData: SignedData): TSTInfo {
  const encapsulated = signedData.encapContentInfo;
  if (encapsulated.eContentType !== OID.tstInfo) {
    throw malformed(
      `token content type is ${encapsulated.eContentType}, expected id-ct-TSTInfo (${OID.tstInfo})`,
    );
  }
  const eContent = encapsulated.eContent;
  if (!eContent || eContent.idBlock.isConstructed) {
    throw malformed('token has no TSTInfo as a primitive DER OCTET STRING');
  }
  const schema = parseDer(eContent.valueBlock.valueHexView, 'TSTInfo');
  let tstInfo: TSTInfo;
  try {
    tstInfo = new TSTInfo({ schema });
  } catch (error) {
    throw malformed('TSTInfo does not match the RFC 3161 structure', error);
  }
  if (tstInfo.version !== 1) {
    throw malformed(`TSTInfo version is ${tstInfo.version}, expected 1`);
  }
  return tstInfo;
}

/**
 * Finds the `[0] IMPLICIT CertificateSet` of a SignedData SEQUENCE and returns the DER of each
 * entry, in the order pkijs lists them in `SignedData.certificates`.
 */
function certificateBytes(signedDataBlock: asn1js.AsnType): Uint8Array[] {
  const fields = (signedDataBlock as asn1js.Sequence).valueBlock.value;
  const set = fields.find((field) => field.idBlock.tagClass === 3 && field.idBlock.tagNumber === 0);
  if (!(set instanceof asn1js.Constructed)) {
    return [];
  }
  return set.valueBlock.value.map(bytesOf);
}

/** Parses a DER TimeStampToken, or the token inside a granted TimeStampResp. */
export function parseTimestampToken(input: Uint8Array): ParsedTimestampToken {
  const der = extractTimestampToken(input);
  const root = parseDer(der, 'timestamp token');
  let contentInfo: ContentInfo;
  let signedData: SignedData;
  try {
    contentInfo = new ContentInfo({ schema: root });
    if (contentInfo.contentType !== OID.signedData) {
      throw malformed(`token content type is ${contentInfo.contentType}, expected signedData`);
    }
    signedData = new SignedData({ schema: contentInfo.content });
  } catch (error) {
    if (error instanceof TimestampError) {
      throw error;
    }
    throw malformed('token is not a CMS SignedData ContentInfo', error);
  }
  if (signedData.signerInfos.length !== 1) {
    throw malformed(
      `token has ${signedData.signerInfos.length} SignerInfos; RFC 3161 allows only the TSA's`,
    );
  }
  const tstInfo = readTstInfo(signedData);

  const raw = certificateBytes(contentInfo.content as asn1js.AsnType);
  const certificates: ParsedTimestampToken['certificates'] = [];
  (signedData.certificates ?? []).forEach((certificate, index) => {
    if (certificate instanceof Certificate && raw[index] !== undefined) {
      certificates.push({ der: raw[index], certificate });
    }
  });
  return { der, signedData, signerInfo: signedData.signerInfos[0]!, tstInfo, certificates };
}
