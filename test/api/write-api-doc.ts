/** Rewrites docs/API.md from the sources (see public-api.ts). */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { publicApi, renderApi } from './public-api.js';

const file = path.resolve(import.meta.dirname, '..', '..', 'docs', 'API.md');
writeFileSync(file, renderApi(publicApi()));
console.log(`wrote ${file}`);
