#!/usr/bin/env node
// Runs the TypeScript CLI directly (tsx compiles on the fly; no build step needed).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/bin.ts');
