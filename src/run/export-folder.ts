/**
 * A Diffuse export on disk (Node): telling one from a run folder, and reading its manifest. The
 * commands that take a run take an export in its place (`--model DIR`), through readRunConfig,
 * runImageShape, readTokenizer and DiffusionPipeline.fromRun, which ask here first.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { readSettingsJson } from '../data/safe-file.js';
import { DIFFUSE_PIPELINE_CLASS, ExportManifest, MISSING, manifestOf } from './export-layout.js';
import { validateRunConfig } from './config.js';

/** Whether `dir` holds what `diffuse export` writes (model_index.json naming DiffusePipeline). */
export function isExportFolder(dir: string): boolean {
  const file = path.join(dir, 'model_index.json');
  if (!existsSync(file)) return false;
  try {
    return (readSettingsJson(file) as { _class_name?: unknown })?._class_name === DIFFUSE_PIPELINE_CLASS;
  } catch {
    return false;
  }
}

/** The manifest of the export in `dir` (see readExportedModel, which reads the same through ModelFiles). */
export function readExportFolder(dir: string): ExportManifest {
  const at = (...parts: string[]) => path.join(dir, ...parts);
  const json = (...parts: string[]) => {
    if (!existsSync(at(...parts))) throw new Error(`${at(...parts)}: ${MISSING}`);
    return readSettingsJson(at(...parts)) as Record<string, unknown>;
  };
  const m = manifestOf(json('model_index.json'), json('unet', 'config.json'), json('scheduler', 'scheduler_config.json'), at);
  try {
    validateRunConfig(m.run);
  } catch (e) {
    throw new Error(`${at('unet', 'config.json')}: diffuse.run: ${(e as Error).message.replace(/^config: /, '')}`);
  }
  return m;
}

/** How to name a model folder on a command line: `--model DIR` for what diffuse export wrote, `--run DIR` for a run. */
export function modelFlag(dir: string): string {
  return `${isExportFolder(dir) ? '--model' : '--run'} ${dir}`;
}
