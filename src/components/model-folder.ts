/**
 * A model folder on disk as ModelFiles (Node): configs read with node:fs, networks opened by path
 * in onnxruntime-node (so that ONNX Runtime also finds a large model's external weights beside
 * model.onnx), hashes read as streams (a Stable Diffusion U-Net is 3.4 GB in float32).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { defaultOrt } from '../engine/runtime.js';
import type { Device, OrtModule } from '../engine/runtime.js';
import type { ModelFiles } from './model-files.js';
import { ComponentNeeds, OnnxComponent } from './onnx-component.js';

export interface FolderOptions {
  device?: Device;
  ort?: OrtModule;
  /** ONNX Runtime's CPU memory arena (default on). */
  cpuMemArena?: boolean;
}

/** Opens one .onnx file, checking that it is a regular file with the named inputs and outputs. */
export async function openComponentFile(file: string, need: ComponentNeeds, o: FolderOptions = {}): Promise<OnnxComponent> {
  let st;
  try {
    st = await stat(file);
  } catch {
    throw new Error(`${file}: no such file`);
  }
  if (!st.isFile()) throw new Error(`${file}: not a regular file`);
  const ort = o.ort ?? (await defaultOrt());
  return OnnxComponent.create(ort, file, file, need, {
    executionProviders: o.device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    logSeverityLevel: 3,
    ...(o.cpuMemArena === false ? { enableCpuMemArena: false } : {}),
  });
}

/** The model folder `dir` as ModelFiles. */
export function folderFiles(dir: string, o: FolderOptions = {}): ModelFiles {
  const at = (...parts: string[]) => (parts.length ? path.join(dir, ...parts) : dir);
  return {
    where: at,
    exists: async (...parts) => existsSync(at(...parts)),
    readText: async (...parts) => {
      const file = at(...parts);
      if (!existsSync(file)) return undefined;
      if (!statSync(file).isFile()) throw new Error(`${file}: not a regular file`);
      return readFileSync(file, 'utf8');
    },
    open: (component, need) => openComponentFile(at(component, 'model.onnx'), need, o),
    hash: async (components) => {
      const hash = createHash('sha256');
      for (const component of components) {
        const folder = at(component);
        if (!existsSync(folder)) throw new Error(`${folder}: no such folder (the model folder lacks its ${component})`);
        for (const name of readdirSync(folder).filter((f) => f !== 'config.json').sort()) {
          const file = path.join(folder, name);
          if (!statSync(file).isFile()) continue;
          for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
        }
      }
      return hash.digest('hex');
    },
  };
}
