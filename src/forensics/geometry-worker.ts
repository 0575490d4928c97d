/**
 * One thread of the geometric search (see geometry-threads.ts): answers each request, an image's
 * inverted noise, with detectInMovedNoise's result.
 */
import { serveRequests } from '../threads/pool.js';
import { detectInMovedNoise } from './geometry-search.js';
import type { SearchRequest } from './geometry-threads.js';

serveRequests((r: SearchRequest) => detectInMovedNoise(r.key, r.noise, r.shape, r.options));
