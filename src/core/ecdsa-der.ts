// ECDSA signature encoding rules. An ECDSA signature (r, s) and (r, n - s) verify alike, so
// without a rule a third party could turn one valid signature into a second valid one. CDIL
// signs with s in the lower half of the group order (as Bitcoin's BIP 62 and many HSMs do)
// and verifiers reject the upper half, so each certificate has exactly one valid signature.

/** Order n of the P-256 group (SEC 2, section 2.4.2). */
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_ORDER = P256_ORDER >> 1n;
const HALF_ORDER_BYTES = Uint8Array.from(
  HALF_ORDER.toString(16)
    .padStart(64, '0')
    .match(/../g)!
    .map((pair) => parseInt(pair, 16)),
);

interface IntegerField {
  /** Offset of the first content byte. */
  start: number;
  /** Offset after the last content byte. */
  end: number;
}

function readInteger(der: Uint8Array, offset: number): IntegerField | undefined {
  if (der[offset] !== 0x02) {
    return undefined;
  }
  const length = der[offset + 1];
  if (length === undefined || length === 0 || length > 33 || offset + 2 + length > der.length) {
    return undefined;
  }
  return { start: offset + 2, end: offset + 2 + length };
}

/** Locates r and s in a DER `SEQUENCE { INTEGER r, INTEGER s }` with short-form lengths. */
function locate(der: Uint8Array): { r: IntegerField; s: IntegerField } | undefined {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2) {
    return undefined;
  }
  const r = readInteger(der, 2);
  const s = r && readInteger(der, r.end);
  if (!r || !s || s.end !== der.length) {
    return undefined;
  }
  return { r, s };
}

function toBigInt(der: Uint8Array, field: IntegerField): bigint {
  let value = 0n;
  for (let i = field.start; i < field.end; i++) {
    value = (value << 8n) | BigInt(der[i]!);
  }
  return value;
}

/** Parses a DER ECDSA signature into r and s; undefined when it is not one. */
export function parseDerSignature(der: Uint8Array): { r: bigint; s: bigint } | undefined {
  const fields = locate(der);
  return fields && { r: toBigInt(der, fields.r), s: toBigInt(der, fields.s) };
}

/** Compares an unsigned big-endian integer in der[start, end) with half the group order. */
function compareWithHalfOrder(der: Uint8Array, field: IntegerField): number {
  let start = field.start;
  while (start < field.end && der[start] === 0) {
    start++;
  }
  const length = field.end - start;
  if (length !== HALF_ORDER_BYTES.length) {
    return length < HALF_ORDER_BYTES.length ? -1 : 1;
  }
  for (let i = 0; i < length; i++) {
    const difference = der[start + i]! - HALF_ORDER_BYTES[i]!;
    if (difference !== 0) {
      return difference;
    }
  }
  return 0;
}

function isZero(der: Uint8Array, field: IntegerField): boolean {
  for (let i = field.start; i < field.end; i++) {
    if (der[i] !== 0) {
      return false;
    }
  }
  return true;
}

function encodeInteger(value: bigint): number[] {
  const bytes: number[] = [];
  for (let rest = value; rest > 0n; rest >>= 8n) {
    bytes.unshift(Number(rest & 0xffn));
  }
  if (bytes.length === 0 || bytes[0]! >= 0x80) {
    bytes.unshift(0);
  }
  return [0x02, bytes.length, ...bytes];
}

export function isLowS(der: Uint8Array): boolean {
  const fields = locate(der);
  return fields !== undefined && !isZero(der, fields.s) && compareWithHalfOrder(der, fields.s) <= 0;
}

/** Returns the low-S form of a P-256 DER signature; the input when it is already low-S. */
export function toLowS(der: Uint8Array): Uint8Array {
  const fields = locate(der);
  if (!fields) {
    throw new TypeError('not a DER ECDSA signature');
  }
  if (compareWithHalfOrder(der, fields.s) <= 0) {
    return der;
  }
  const body = [
    ...der.subarray(fields.r.start - 2, fields.r.end),
    ...encodeInteger(P256_ORDER - toBigInt(der, fields.s)),
  ];
  return Uint8Array.from([0x30, body.length, ...body]);
}
