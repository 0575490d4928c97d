/**
 * Signing credentials for content credentials (C2PA): an ES256 key and its certificate chain.
 *
 * `makeSigningChain` makes a local chain, a self-signed root and an end-entity certificate with
 * what the C2PA specification asks of a claim signer (sec. 14.5.1: digitalSignature key usage,
 * an extended key usage such as emailProtection or documentSigning, not a CA). A self-signed
 * root is trusted by nobody else: validators elsewhere report such credentials as valid but
 * untrusted, unless the analyst adds the root to their trust list.
 */
import { existsSync } from 'node:fs';
import { readSettingsFile } from '../data/safe-file.js';
import * as path from 'node:path';
import { webcrypto } from 'node:crypto';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  PemConverter,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
  cryptoProvider,
} from '@peculiar/x509';

cryptoProvider.set(webcrypto as unknown as Crypto);

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** id-kp-documentSigning (RFC 9336), one of the extended key usages C2PA accepts. */
const DOCUMENT_SIGNING = '1.3.6.1.5.5.7.3.36';

/** PEM texts of a chain: the private key (PKCS#8), the end-entity certificate, the root. */
export interface SigningChainPem {
  key: string;
  certificate: string;
  root: string;
}

/** File names inside a credentials folder. */
export const CREDENTIAL_FILES = { key: 'c2pa-key.pem', certificate: 'c2pa-cert.pem', root: 'c2pa-root.pem' } as const;

/**
 * A new local ES256 chain: root (10 years) -> end-entity signer (2 years from now, or the
 * `signerValidity` given: tests use a signer that has already expired), named after `name`.
 */
export async function makeSigningChain(name = 'Diffuse local signer', o: { signerValidity?: { notBefore: Date; notAfter: Date } } = {}): Promise<SigningChainPem> {
  const subtle = webcrypto.subtle;
  const rootKeys = (await subtle.generateKey(ECDSA, true, ['sign', 'verify'])) as CryptoKeyPair;
  const leafKeys = (await subtle.generateKey(ECDSA, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const day = 86_400_000;
  const serial = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1');
  const rootName = `CN=${escapeDn(name)} root, O=Diffuse (self-signed, untrusted elsewhere)`;
  const root = await X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: rootName,
    notBefore: new Date(Math.min(now - day, (o.signerValidity?.notBefore.getTime() ?? now) - day)),
    notAfter: new Date(now + 3650 * day),
    keys: rootKeys,
    signingAlgorithm: SIGNING,
    extensions: [
      new BasicConstraintsExtension(true, 0, true),
      new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
      await SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const leaf = await X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${escapeDn(name)}, O=Diffuse`,
    issuer: root.subject,
    notBefore: o.signerValidity?.notBefore ?? new Date(now - day),
    notAfter: o.signerValidity?.notAfter ?? new Date(now + 730 * day),
    publicKey: leafKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new BasicConstraintsExtension(false, undefined, true),
      new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
      new ExtendedKeyUsageExtension([ExtendedKeyUsage.emailProtection, DOCUMENT_SIGNING]),
      await SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
      await AuthorityKeyIdentifierExtension.create(root),
    ],
  });
  const pkcs8 = await subtle.exportKey('pkcs8', leafKeys.privateKey);
  return { key: PemConverter.encode(pkcs8, 'PRIVATE KEY'), certificate: leaf.toString('pem'), root: root.toString('pem') };
}

function escapeDn(s: string): string {
  return s.replace(/[,+"\\<>;=]/g, (c) => `\\${c}`);
}

/** A key and its chain, ready to sign: what `signImage` takes. */
export interface SigningCredentials {
  privateKey: CryptoKey;
  certificate: X509Certificate;
  /** Certificates above the end-entity one, nearest first (the root may be left out). */
  chain: X509Certificate[];
}

/** Parses PEM texts into signing credentials; errors name what is wrong. */
export async function readSigningCredentials(pem: { key: string; certificate: string }, what = 'credentials'): Promise<SigningCredentials> {
  let certs: X509Certificate[];
  try {
    certs = PemConverter.decode(pem.certificate).map((der) => new X509Certificate(der));
  } catch (e) {
    throw new Error(`${what}: the certificate file is not PEM X.509 (${(e as Error).message})`);
  }
  if (!certs.length) throw new Error(`${what}: the certificate file holds no certificate`);
  let privateKey: CryptoKey;
  try {
    const der = PemConverter.decode(pem.key);
    if (der.length !== 1) throw new Error('expected one PRIVATE KEY block');
    privateKey = await webcrypto.subtle.importKey('pkcs8', der[0], ECDSA, false, ['sign']);
  } catch (e) {
    throw new Error(`${what}: the key file is not a PKCS#8 P-256 private key in PEM (${(e as Error).message})`);
  }
  // The key must belong to the certificate: sign and verify a probe.
  const probe = new Uint8Array([1, 2, 3]);
  const sig = await webcrypto.subtle.sign(SIGNING, privateKey, probe);
  const pub = await certs[0].publicKey.export(ECDSA, ['verify']);
  if (!(await webcrypto.subtle.verify(SIGNING, pub, sig, probe))) throw new Error(`${what}: the private key does not match the certificate`);
  return { privateKey, certificate: certs[0], chain: certs.slice(1) };
}

/**
 * Loads signing credentials from a folder made by `diffuse keygen --c2pa` (c2pa-key.pem,
 * c2pa-cert.pem) or from explicit key and certificate files (the certificate file may hold the
 * chain after the end-entity certificate).
 */
export async function loadSigningCredentials(o: { dir?: string; key?: string; certificate?: string }): Promise<SigningCredentials> {
  const keyFile = o.key ?? (o.dir ? path.join(o.dir, CREDENTIAL_FILES.key) : undefined);
  const certFile = o.certificate ?? (o.dir ? path.join(o.dir, CREDENTIAL_FILES.certificate) : undefined);
  if (!keyFile || !certFile) throw new Error('content credentials need a key and a certificate (a folder from diffuse keygen --c2pa)');
  for (const f of [keyFile, certFile]) if (!existsSync(f)) throw new Error(`${f}: no such file (make one with diffuse keygen --c2pa --out DIR)`);
  return readSigningCredentials({ key: readSettingsFile(keyFile), certificate: readSettingsFile(certFile) }, path.dirname(keyFile));
}
