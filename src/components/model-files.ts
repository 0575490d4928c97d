/**
 * Where a model folder's files come from: a folder on disk in Node (model-folder.ts), the
 * studio's server in a browser (src/studio/page/model-files.ts). StableDiffusionPipeline reads
 * its configs and opens its networks through this, and nothing else, so that the same pipeline
 * runs in both.
 */
import type { ComponentNeeds, OnnxComponent } from './onnx-component.js';

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
