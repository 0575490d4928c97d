/**
 * Where a model folder's files come from: a folder on disk in Node (model-folder.ts), the
 * studio's server in a browser (src/studio/page/model-files.ts). StableDiffusionPipeline reads
 * its configs and opens its networks through this, and nothing else, so that the same pipeline
 * runs in both.
 */
import type { ComponentNeeds, OnnxComponent } from './onnx-component.js';
import { parsePythonJson } from '../samplers/from-config.js';

export interface ModelFiles {
  /** Where a file of the folder is (`where('unet', 'model.onnx')`), for messages: a path or a URL; `where()` is the folder. */
  where(...parts: string[]): string;
  /** Whether the folder has the file. */
  exists(...parts: string[]): Promise<boolean>;
  /** A file's text, or undefined when the folder has no such file. */
  readText(...parts: string[]): Promise<string | undefined>;
  /** Opens a component's network (`open('unet', need)`: unet/model.onnx, with any external weights beside it). */
  open(component: string, need: ComponentNeeds): Promise<OnnxComponent>;
  /**
   * SHA-256 of the files of these component folders in name order, configs left out (what
   * content credentials and detector calibrations name); absent where the bytes cannot be read (a browser).
   */
  hash?(components: readonly string[]): Promise<string>;
}

/**
 * A config file of the folder as a JSON object (Python's json module's Infinity and NaN read too).
 * Absent, it is undefined when `absent` is 'optional', else an error whose words `absent` gives
 * (default "no such file"); every error names the file.
 */
export async function readJsonObject(files: ModelFiles, parts: readonly string[], absent: 'optional'): Promise<Record<string, unknown> | undefined>;
export async function readJsonObject(files: ModelFiles, parts: readonly string[], absent?: string): Promise<Record<string, unknown>>;
export async function readJsonObject(files: ModelFiles, parts: readonly string[], absent = 'no such file'): Promise<Record<string, unknown> | undefined> {
  const text = await files.readText(...parts);
  const file = files.where(...parts);
  if (text === undefined) {
    if (absent === 'optional') return undefined;
    throw new Error(`${file}: ${absent}`);
  }
  const v = parsePythonJson(text, file);
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: not a JSON object`);
  return v as Record<string, unknown>;
}
