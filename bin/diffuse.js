#!/usr/bin/env node
// The `diffuse` command. In the source tree it runs the TypeScript directly (tsx compiles it on
// the fly, so an edit needs no build step); an installed package runs the compiled dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/bin.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import('../dist/cli/bin.js');
}
