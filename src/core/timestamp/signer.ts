// Checks on the TSA's signer certificate that pkijs does not make: which certificate the
// SignerInfo names, the ESS signing-certificate binding, the TSA name in the TSTInfo, the
// timeStamping key purpose and the validity period at the time of stamping.
import * as asn1js from 'asn1js';
import {
  AlgorithmIdentifier,
  AltName,
  ExtKeyUsage,
  IssuerAndSerialNumber,
  IssuerSerial,
  type Certificate,
  type GeneralName,
  type CryptoEngine,
  type RelativeDistinguishedNames,
  type SignerInfo,
} from 'pkijs';
import { bytesEqual } from '../encoding.ts';
import { TimestampError, TimestampErrorCode } from '../errors.ts';
import { formatGeneralName, formatName } from './certificates.ts';
import { hashAlgorithmByOid, OID, type HashAlgorithmName } from './oids.ts';
import type { ParsedTimestampToken } from './token.ts';

export interface SignerCertificate {
  der: Uint8Array;
  certificate: Certificate;
}

function signerMismatch(message: string): TimestampError {
  return new TimestampError(TimestampErrorCode.SIGNER_MISMATCH, message);
}

function subjectKeyIdentifier(certificate: Certificate): Uint8Array | undefined {
  const extension = certificate.extensions?.find((ext) => ext.extnID === OID.subjectKeyIdentifier);
  const value: unknown = extension?.parsedValue;
  return value instanceof asn1js.OctetString ? value.valueBlock.valueHexView : undefined;
}

/**
 * Finds the certificate that the SignerInfo's sid names. A subjectKeyIdentifier sid matches the
 * certificate's SKI extension, or the SHA-1 of its public key as pkijs computes it.
 */
export async function findSignerCertificate(
  token: ParsedTimestampToken,
  engine: CryptoEngine,
): Promise<SignerCertificate> {
  if (token.certificates.length === 0) {
    throw new TimestampError(
      TimestampErrorCode.MALFORMED,
      'token contains no certificates, so it cannot be verified offline; request it with certReq=true',
    );
  }
  const sid: unknown = token.signerInfo.sid;
  for (const entry of token.certificates) {
    const { certificate } = entry;
    if (sid instanceof IssuerAndSerialNumber) {
      if (
        certificate.issuer.isEqual(sid.issuer) &&
        certificate.serialNumber.isEqual(sid.serialNumber)
      ) {
        return entry;
      }
      continue;
    }
    const block = sid as asn1js.Constructed & asn1js.Primitive;
    const keyId = block.idBlock.isConstructed
      ? (block.valueBlock.value[0] as asn1js.OctetString).valueBlock.valueHexView
      : block.valueBlock.valueHexView;
    const ski = subjectKeyIdentifier(certificate);
    if (ski && bytesEqual(ski, keyId)) {
      return entry;
    }
    const keyHash = new Uint8Array(
      await engine.digest(
        { name: 'SHA-1' },
        certificate.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView,
      ),
    );
    if (bytesEqual(keyHash, keyId)) {
      return entry;
    }
  }
  throw signerMismatch('token does not contain the certificate that its SignerInfo names');
}

interface EssCertId {
  hashAlgorithm: HashAlgorithmName;
  certHash: Uint8Array;
  issuerSerial: IssuerSerial | undefined;
}

/**
 * Reads the first ESSCertID(v2) of a SigningCertificate(V2) attribute value. RFC 5035 puts the
 * signer's certificate first; later entries name other certificates of its chain.
 */
function readFirstCertId(value: unknown, version2: boolean): EssCertId {
  const attribute = version2 ? 'SigningCertificateV2' : 'SigningCertificate';
  try {
    const certs = (value as asn1js.Sequence).valueBlock.value[0] as asn1js.Sequence;
    const fields = (certs.valueBlock.value[0] as asn1js.Sequence).valueBlock.value;
    let index = 0;
    let hashOid: string = version2 ? OID.sha256 : OID.sha1;
    if (version2 && fields[0] instanceof asn1js.Sequence) {
      hashOid = new AlgorithmIdentifier({ schema: fields[0] }).algorithmId;
      index++;
    }
    const certHash = fields[index];
    if (!(certHash instanceof asn1js.OctetString)) {
      throw new Error('certHash is not an OCTET STRING');
    }
    const issuerSerialBlock = fields[index + 1];
    const hash = hashAlgorithmByOid(hashOid);
    if (!hash) {
      throw new TimestampError(
        TimestampErrorCode.ALGORITHM_UNSUPPORTED,
        `${attribute} uses unknown hash algorithm ${hashOid}`,
      );
    }
    return {
      hashAlgorithm: hash.name,
      certHash: certHash.valueBlock.valueHexView,
      issuerSerial: issuerSerialBlock ? new IssuerSerial({ schema: issuerSerialBlock }) : undefined,
    };
  } catch (error) {
    if (error instanceof TimestampError) {
      throw error;
    }
    throw new TimestampError(
      TimestampErrorCode.MALFORMED,
      `${attribute} attribute does not match the RFC 5035 structure`,
      { cause: error },
    );
  }
}

/**
 * Checks the ESS SigningCertificate and SigningCertificateV2 signed attributes, when present:
 * the first certificate ID must hash to the signer certificate, and its issuer and serial
 * number, when given, must be the signer certificate's. This binds the signature to one
 * certificate, so a token cannot be re-presented with another certificate for the same key.
 *
 * NOTE: a token with neither attribute passes, although RFC 3161 and RFC 5816 require one.
 */
export async function checkSigningCertificateBinding(
  signerInfo: SignerInfo,
  signer: SignerCertificate,
  engine: CryptoEngine,
): Promise<void> {
  for (const attribute of signerInfo.signedAttrs?.attributes ?? []) {
    const version2 = attribute.type === OID.signingCertificateV2;
    if (!version2 && attribute.type !== OID.signingCertificate) {
      continue;
    }
    const certId = readFirstCertId(attribute.values[0], version2);
    const hash = new Uint8Array(await engine.digest({ name: certId.hashAlgorithm }, signer.der));
    if (!bytesEqual(hash, certId.certHash)) {
      throw signerMismatch(
        `the ${certId.hashAlgorithm} hash in the ESS signing-certificate attribute does not match the signer certificate`,
      );
    }
    const issuerSerial = certId.issuerSerial;
    if (issuerSerial) {
      const { certificate } = signer;
      const issuerMatches = issuerSerial.issuer.names.some(
        (name) =>
          name.type === 4 && (name.value as RelativeDistinguishedNames).isEqual(certificate.issuer),
      );
      if (!issuerMatches || !issuerSerial.serialNumber.isEqual(certificate.serialNumber)) {
        throw signerMismatch(
          'the issuer and serial number in the ESS signing-certificate attribute are not those of the signer certificate',
        );
      }
    }
  }
}

function generalNameDer(name: GeneralName): Uint8Array {
  return new Uint8Array((name.toSchema() as asn1js.BaseBlock).toBER());
}

/**
 * Checks that the TSTInfo's optional `tsa` field names the signer: a directoryName must equal
 * the certificate subject, and any name may also match a subjectAltName entry.
 */
export function checkTsaName(tsa: GeneralName | undefined, certificate: Certificate): void {
  if (!tsa) {
    return;
  }
  if (tsa.type === 4 && (tsa.value as RelativeDistinguishedNames).isEqual(certificate.subject)) {
    return;
  }
  const altNames = certificate.extensions?.find((ext) => ext.extnID === OID.subjectAltName);
  if (altNames?.parsedValue instanceof AltName) {
    const expected = generalNameDer(tsa);
    if (altNames.parsedValue.altNames.some((name) => bytesEqual(generalNameDer(name), expected))) {
      return;
    }
  }
  throw signerMismatch(
    `TSTInfo names the TSA "${formatGeneralName(tsa)}", but the signer certificate is "${formatName(certificate.subject)}"`,
  );
}

/**
 * Checks that the certificate may sign timestamps: RFC 3161 section 2.3 requires a critical
 * extended key usage whose only purpose is id-kp-timeStamping. A key usage extension, when
 * present, must allow digitalSignature or nonRepudiation.
 */
export function checkTimestampingUsage(certificate: Certificate): void {
  const subject = formatName(certificate.subject);
  const eku = certificate.extensions?.find((ext) => ext.extnID === OID.extendedKeyUsage);
  if (!eku || !(eku.parsedValue instanceof ExtKeyUsage)) {
    throw new TimestampError(
      TimestampErrorCode.SIGNER_NOT_TSA,
      `signer certificate "${subject}" has no extended key usage extension; a TSA certificate needs a critical timeStamping one`,
    );
  }
  const purposes = eku.parsedValue.keyPurposes;
  if (!eku.critical || purposes.length !== 1 || purposes[0] !== OID.timeStamping) {
    throw new TimestampError(
      TimestampErrorCode.SIGNER_NOT_TSA,
      `signer certificate "${subject}" must have a critical extended key usage of only timeStamping, ` +
        `found ${eku.critical ? 'critical' : 'non-critical'} [${purposes.join(', ')}]`,
    );
  }
  const keyUsage = certificate.extensions?.find((ext) => ext.extnID === OID.keyUsage);
  const bits: unknown = keyUsage?.parsedValue;
  if (bits instanceof asn1js.BitString) {
    const firstByte = bits.valueBlock.valueHexView[0] ?? 0;
    // Bit 0 is digitalSignature (0x80), bit 1 nonRepudiation (0x40), as in RFC 5280 4.2.1.3.
    if ((firstByte & 0xc0) === 0) {
      throw new TimestampError(
        TimestampErrorCode.SIGNER_NOT_TSA,
        `signer certificate "${subject}" key usage allows neither digitalSignature nor nonRepudiation`,
      );
    }
  }
}

/** Checks that the signer certificate's validity period contains the token's genTime. */
export function checkValidityAt(certificate: Certificate, genTime: Date): void {
  const notBefore = certificate.notBefore.value;
  const notAfter = certificate.notAfter.value;
  if (genTime < notBefore || genTime > notAfter) {
    throw new TimestampError(
      TimestampErrorCode.SIGNER_NOT_VALID,
      `signer certificate "${formatName(certificate.subject)}" is valid from ${notBefore.toISOString()} ` +
        `to ${notAfter.toISOString()}, which does not include the token's genTime ${genTime.toISOString()}`,
    );
  }
}
