/**
 * Content credentials (C2PA 2.1) on the images Diffuse writes, signed with @trustnxt/c2pa-ts.
 *
 * Each manifest holds: a data hash binding it to the file's bytes; a c2pa.actions assertion with
 * c2pa.created (or c2pa.edited for img2img and inpainting), digitalSourceType
 * trainedAlgorithmicMedia and a softwareAgent naming Diffuse; the input image as an ingredient for
 * edits; and a `diffuse.generation` assertion saying what made the image (run, model hash,
 * scheduler, steps, seed, prompt, guidance, watermark payload id; never a key).
 */
import { randomUUID, webcrypto } from 'node:crypto';
import { JPEG, PNG } from '@trustnxt/c2pa-ts/asset';
import type { Signer } from '@trustnxt/c2pa-ts/cose';
import { CBORBox, type IBox } from '@trustnxt/c2pa-ts/jumbf';
import { ActionAssertion, Assertion, DataHashAssertion, IngredientAssertion, ManifestStore, RelationshipType } from '@trustnxt/c2pa-ts/manifest';
import type { SigningCredentials } from './certificates.js';

/** IPTC's term for media made by a trained model (C2PA's digitalSourceType for generated images). */
export const TRAINED_ALGORITHMIC_MEDIA = 'http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia';
/** The label of Diffuse's own assertion. */
export const DIFFUSE_ASSERTION = 'diffuse.generation';
/** The version written into softwareAgent. */
export const DIFFUSE_VERSION = '0.1.0';

/** What made an image: stored in the diffuse.generation assertion. Keys never go here. */
export interface GenerationRecord {
  /** 'generate', 'img2img', 'inpaint'. */
  operation: 'generate' | 'img2img' | 'inpaint';
  /** The run folder's name (not its full path, which may name the user). */
  run: string;
  /** SHA-256 of the model's weights. */
  modelHash: string;
  scheduler: string;
  steps: number;
  seed: number;
  eta?: number;
  guidance?: number;
  prompt?: string;
  negativePrompt?: string;
  classLabel?: string;
  strength?: number;
  /** The watermark's payload (a 32-bit id), when the image carries one. */
  watermarkPayload?: number;
  /** Position of the image in its batch, or 'grid' for a grid of many. */
  index?: number | 'grid';
}

/** The input image of an edit: recorded as the manifest's parentOf ingredient. */
export interface IngredientRecord {
  title: string;
  format: 'image/png' | 'image/jpeg' | string;
}

/** A CBOR assertion of any label: how Diffuse's own record is written. */
class CborAssertion extends Assertion {
  content: unknown;
  constructor(label: string, content: unknown) {
    super();
    this.label = label;
    this.content = content;
    // CBOR assertions are typed by this UUID (JUMBF type for cbor content, C2PA 2.1 sec. 11.1).
    this.uuid = new Uint8Array([0x63, 0x62, 0x6f, 0x72, 0x00, 0x11, 0x00, 0x10, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71]);
  }
  readContentFromJUMBF(box: IBox): void {
    this.content = (box as CBORBox).content;
  }
  generateJUMBFBoxForContent(): IBox {
    const box = new CBORBox();
    box.content = this.content;
    return box;
  }
}

/** c2pa-ts's Signer over WebCrypto: ECDSA P-256 signatures in raw r|s form, which COSE and c2pa-rs require. */
function webCryptoSigner(c: SigningCredentials): Signer {
  return {
    algorithm: -7, // COSE ES256
    certificate: c.certificate,
    chainCertificates: c.chain,
    sign: async (payload: Uint8Array) => new Uint8Array(await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, c.privateKey, payload)),
  } as Signer;
}

/** The file format from its first bytes: PNG and JPEG are what Diffuse signs. */
export function imageFormat(bytes: Uint8Array): 'image/png' | 'image/jpeg' | undefined {
  if (PNG.canRead(bytes)) return 'image/png';
  if (JPEG.canRead(bytes)) return 'image/jpeg';
  return undefined;
}

/** Returns the image's bytes with a signed manifest embedded. */
export async function signImage(bytes: Uint8Array, credentials: SigningCredentials, record: GenerationRecord, ingredient?: IngredientRecord): Promise<Uint8Array> {
  const format = imageFormat(bytes);
  if (!format) throw new Error('content credentials: only PNG and JPEG files can be signed');
  const asset = format === 'image/png' ? new PNG(bytes) : new JPEG(bytes);
  const signer = webCryptoSigner(credentials);
  const store = new ManifestStore();
  const manifest = store.createManifest({ assetFormat: format, instanceID: `xmp:iid:${randomUUID()}`, defaultHashAlgorithm: 'SHA-256', signer });
  // c2pa-ts reserves 25 KB for the signature; ES256 with a two-certificate chain needs a few hundred bytes more than the measured size (the signature itself).
  manifest.signature!.signatureData.paddingLength = 512;
  const dataHash = DataHashAssertion.create('SHA-256');
  manifest.addAssertion(dataHash);
  const actions = new ActionAssertion();
  actions.actions = [
    {
      action: (record.operation === 'generate' ? 'c2pa.created' : 'c2pa.edited') as never,
      digitalSourceType: TRAINED_ALGORITHMIC_MEDIA as never,
      softwareAgent: { name: 'Diffuse', version: DIFFUSE_VERSION },
      description: record.operation === 'generate' ? 'generated by a diffusion model' : `${record.operation} with a diffusion model`,
    },
  ];
  manifest.addAssertion(actions);
  if (ingredient) {
    const ing = IngredientAssertion.create(ingredient.title, ingredient.format, `xmp:iid:${randomUUID()}`);
    ing.relationship = RelationshipType.ParentOf;
    manifest.addAssertion(ing);
  }
  manifest.addAssertion(new CborAssertion(DIFFUSE_ASSERTION, stripUndefined(record)));
  manifest.claim!.claimGeneratorName = 'Diffuse';
  manifest.claim!.claimGeneratorVersion = DIFFUSE_VERSION;
  await asset.ensureManifestSpace(store.measureSize());
  await dataHash.updateWithAsset(asset);
  await manifest.sign(signer);
  await asset.writeManifestJUMBF(store.getBytes());
  return asset.getDataRange();
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

