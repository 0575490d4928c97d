/** One thread of the pixel checks (see pixel-signals.ts and Inspector). */
import sharp from 'sharp';
import { serveRequests } from '../threads/pool.js';
import { PixelRequest, pixelSignals } from './pixel-signals.js';

// One libvips thread per worker: the pool already runs a worker per core, and more decoding
// threads than cores only contend.
sharp.concurrency(1);
serveRequests((r: PixelRequest) => pixelSignals(r));
