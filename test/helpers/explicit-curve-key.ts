// P-256 keys with explicit curve parameters whose public point is someone else's published
// point. With the generator G' = d⁻¹·Q, the point Q is d·G', so the one who picks d can sign
// for a key that shows the same x and y as the real one. Tests use it to check that the
// manual steps of README.txt reject such a key.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** Field prime p and group order n of P-256. */
const FIELD_PRIME = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const GROUP_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
/** The standard P-256 generator G as an uncompressed point. */
const STANDARD_GENERATOR = Buffer.from(
  '046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296' +
    '4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5',
  'hex',
);

type Point = readonly [x: bigint, y: bigint];

function modulo(value: bigint, modulus: bigint): bigint {
  return ((value % modulus) + modulus) % modulus;
}

/** Modular inverse by the extended Euclidean algorithm. */
function inverse(value: bigint, modulus: bigint): bigint {
  let [remainder, nextRemainder] = [modulo(value, modulus), modulus];
  let [coefficient, nextCoefficient] = [1n, 0n];
  while (nextRemainder !== 0n) {
    const quotient = remainder / nextRemainder;
    [remainder, nextRemainder] = [nextRemainder, remainder - quotient * nextRemainder];
    [coefficient, nextCoefficient] = [nextCoefficient, coefficient - quotient * nextCoefficient];
  }
  return modulo(coefficient, modulus);
}

/** Adds two affine points of P-256, whose a is -3. Undefined is the point at infinity. */
function addPoints(first: Point | undefined, second: Point | undefined): Point | undefined {
  if (first === undefined) {
    return second;
  }
  if (second === undefined) {
    return first;
  }
  const [x1, y1] = first;
  const [x2, y2] = second;
  if (x1 === x2 && modulo(y1 + y2, FIELD_PRIME) === 0n) {
    return undefined;
  }
  const slope =
    x1 === x2
      ? modulo((3n * x1 * x1 - 3n) * inverse(2n * y1, FIELD_PRIME), FIELD_PRIME)
      : modulo((y2 - y1) * inverse(x2 - x1, FIELD_PRIME), FIELD_PRIME);
  const x3 = modulo(slope * slope - x1 - x2, FIELD_PRIME);
  return [x3, modulo(slope * (x1 - x3) - y1, FIELD_PRIME)];
}

function multiplyPoint(scalar: bigint, point: Point): Point {
  let result: Point | undefined;
  let addend: Point | undefined = point;
  for (let rest = scalar; rest > 0n; rest >>= 1n) {
    if (rest & 1n) {
      result = addPoints(result, addend);
    }
    addend = addPoints(addend, addend);
  }
  if (result === undefined) {
    throw new Error('scalar multiple is the point at infinity');
  }
  return result;
}

function toBigInt(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function toBytes32(value: bigint): Buffer {
  return Buffer.from(value.toString(16).padStart(64, '0'), 'hex');
}

function uncompressedPoint([x, y]: Point): Buffer {
  return Buffer.concat([Buffer.from([4]), toBytes32(x), toBytes32(y)]);
}

/** Overwrites the one occurrence of `from` in `der` with `to`, which has the same length. */
function replaceOnce(der: Buffer, from: Buffer, to: Buffer, description: string): void {
  const index = der.indexOf(from);
  if (index < 0 || der.indexOf(from, index + 1) >= 0) {
    throw new Error(`expected exactly one ${description} in the explicit-parameter key`);
  }
  to.copy(der, index);
}

/**
 * Returns a private key with explicit P-256 parameters whose public point has the given JWK x
 * and y, and its public key as SPKI PEM (which keeps the explicit parameters).
 */
export function explicitCurveKeyFor(published: { x: string; y: string }): {
  privateKey: KeyObject;
  publicKeyPem: string;
} {
  const target: Point = [
    toBigInt(Buffer.from(published.x, 'base64url')),
    toBigInt(Buffer.from(published.y, 'base64url')),
  ];
  const scalar = modulo(toBigInt(randomBytes(32)), GROUP_ORDER - 2n) + 2n;
  const generator = multiplyPoint(inverse(scalar, GROUP_ORDER), target);

  // Node writes SEC1 keys with the full curve parameters when asked for explicit encoding, so
  // a template key only needs its generator, private scalar and public point swapped.
  const template = generateKeyPairSync('ec', { namedCurve: 'P-256', paramEncoding: 'explicit' });
  const templateJwk = template.privateKey.export({ format: 'jwk' });
  const der = Buffer.from(template.privateKey.export({ type: 'sec1', format: 'der' }));
  replaceOnce(der, STANDARD_GENERATOR, uncompressedPoint(generator), 'standard generator');
  replaceOnce(der, Buffer.from(templateJwk.d!, 'base64url'), toBytes32(scalar), 'private scalar');
  const templatePoint = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(templateJwk.x!, 'base64url'),
    Buffer.from(templateJwk.y!, 'base64url'),
  ]);
  replaceOnce(der, templatePoint, uncompressedPoint(target), 'public point');

  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'sec1' });
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' });
  return { privateKey, publicKeyPem: publicKeyPem.toString() };
}
