/**
 * One thread of file-level inspection (see Inspector): answers each request, a file and the
 * options of the checks that need no model, with inspectImage's report.
 */
import { serveRequests } from '../threads/pool.js';
import { InspectOptions, inspectImage } from './inspect.js';

/** What a file-inspection thread is asked: plain data only (no model, no callbacks). */
export interface FileRequest {
  file: string;
  options: Pick<InspectOptions, 'trustAnchors' | 'trust' | 'maxBytes' | 'maxPixels' | 'metadataOnly'>;
}

serveRequests((r: FileRequest) => inspectImage(r.file, r.options));
