// X.509 helpers for timestamp verification: reading trusted root certificates from PEM or DER,
// and formatting names for messages. Runtime-neutral: pkijs and asn1js only.
import * as asn1js from 'asn1js';
import {
  BasicConstraints,
  Certificate,
  type GeneralName,
  type RelativeDistinguishedNames,
} from 'pkijs';
import { fromBase64, toHex } from '../encoding.ts';
import { TimestampError, TimestampErrorCode } from '../errors.ts';
import { OID } from './oids.ts';

/**
 * Trusted root certificates: a PEM text with one or more CERTIFICATE blocks, a DER certificate,
 * or a list of either.
 */
export type TrustedRoots = string | Uint8Array | readonly (string | Uint8Array)[];

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----/g;
const textDecoder = new TextDecoder();

function rootsError(message: string): TimestampError {
  return new TimestampError(TimestampErrorCode.TRUSTED_ROOTS_INVALID, message);
}

function decodePem(text: string): Uint8Array[] {
  const blocks: Uint8Array[] = [];
  for (const match of text.matchAll(PEM_CERTIFICATE)) {
    const der = fromBase64(match[1]!.replace(/\s+/g, ''));
    if (der === undefined) {
      throw rootsError(`PEM certificate block ${blocks.length + 1} is not valid base64`);
    }
    blocks.push(der);
  }
  if (blocks.length === 0) {
    throw rootsError('trusted roots text contains no "BEGIN CERTIFICATE" PEM block');
  }
  return blocks;
}

/**
 * Decodes trusted roots to one DER certificate each. A Uint8Array that does not start with a DER
 * SEQUENCE tag is read as PEM text. Throws TIMESTAMP_TRUSTED_ROOTS_INVALID when nothing is found.
 */
export function decodeTrustedRoots(roots: TrustedRoots): Uint8Array[] {
  const items = typeof roots === 'string' || roots instanceof Uint8Array ? [roots] : roots;
  const ders: Uint8Array[] = [];
  for (const item of items) {
    if (typeof item === 'string') {
      ders.push(...decodePem(item));
    } else if (item[0] === 0x30) {
      ders.push(item);
    } else {
      ders.push(...decodePem(textDecoder.decode(item)));
    }
  }
  if (ders.length === 0) {
    throw rootsError('no trusted root certificates were given');
  }
  return ders;
}

function isCaCertificate(certificate: Certificate): boolean {
  const extension = certificate.extensions?.find((ext) => ext.extnID === OID.basicConstraints);
  return extension?.parsedValue instanceof BasicConstraints && extension.parsedValue.cA === true;
}

/**
 * Parses DER root certificates. Each must be a CA certificate (basicConstraints cA), because
 * the chain check treats a root as an issuer and never matches a pinned TSA certificate itself.
 */
export function parseTrustedRoots(ders: readonly Uint8Array[]): Certificate[] {
  return ders.map((der, index) => {
    let certificate: Certificate;
    try {
      certificate = Certificate.fromBER(der);
    } catch (error) {
      throw new TimestampError(
        TimestampErrorCode.TRUSTED_ROOTS_INVALID,
        `trusted root ${index + 1} is not a DER X.509 certificate`,
        { cause: error },
      );
    }
    if (!isCaCertificate(certificate)) {
      throw rootsError(
        `trusted root ${index + 1} (${formatName(certificate.subject)}) is not a CA certificate; ` +
          'list the root CA that issued the TSA certificate, not the TSA certificate itself',
      );
    }
    return certificate;
  });
}

const SHORT_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

function attributeText(value: unknown): string {
  if (value instanceof asn1js.BaseStringBlock) {
    return value.getValue();
  }
  return '#' + toHex(new Uint8Array((value as asn1js.BaseBlock).toBER()));
}

/** Formats a distinguished name in RFC 4514 order (most specific first), for messages only. */
export function formatName(name: RelativeDistinguishedNames): string {
  return name.typesAndValues
    .map((entry) => {
      const text = attributeText(entry.value).replace(/[,+"\\<>;]/g, (char) => `\\${char}`);
      return `${SHORT_NAMES[entry.type] ?? entry.type}=${text}`;
    })
    .reverse()
    .join(', ');
}

/** Formats a GeneralName for display: a DN for directoryName, the text for string forms. */
export function formatGeneralName(name: GeneralName): string {
  switch (name.type) {
    case 1:
    case 2:
    case 6:
      // pkijs stores rfc822Name, dNSName and uniformResourceIdentifier as plain strings.
      return String(name.value);
    case 4:
      return formatName(name.value as RelativeDistinguishedNames);
    default:
      return `GeneralName of type ${name.type}`;
  }
}
