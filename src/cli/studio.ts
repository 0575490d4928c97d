/** `diffuse studio`: a local web page to watch diffusion happen, generate in the browser and inspect images. */
import { readKey } from '../forensics/index.js';
import { isWildcardHost } from '../studio/server.js';
import { startStudio } from '../studio/studio.js';
import { readTrustFile } from './credentials.js';
import type { Command } from './flags.js';
import { UsageError, num, oneOf } from './flags.js';

export const commandStudio: Command = {
  summary: 'serve a local page (127.0.0.1) to watch the forward and reverse processes, generate and edit in the browser, and inspect images',
  usage: 'diffuse studio --run DIR | --model DIR [--port 8080] [--host 127.0.0.1] [--key key.json] [--geometric] [--trust root.pem]',
  options: {
    run: { type: 'string', description: 'the run folder' },
    model: { type: 'string', description: 'a model folder instead of a run: a Diffuse export, or a Stable Diffusion-class folder of ONNX components (Optimum\'s layout); generation runs its networks in the browser' },
    port: { type: 'string', description: 'the port to listen on', default: '8080' },
    host: { type: 'string', description: 'the address to listen on (0.0.0.0 would let other machines in)', default: '127.0.0.1' },
    key: { type: 'string', description: "the Inspect tab's watermark key (diffuse keygen); without it the watermark is not checked" },
    geometric: { type: 'boolean', description: "the Inspect tab also looks for the watermark after a turn by any angle or a crop (about a second more per image)" },
    trust: { type: 'string', description: "the Inspect tab's trusted root certificates for content credentials (PEM)" },
    device: { type: 'string', description: "where the server runs the model: cpu or cuda (the Inspect tab, and a model folder's server backend; the browser backends run in the page)", default: 'cpu' },
  },
  async run(v) {
    if (!v.run === !v.model) throw new UsageError('give --run DIR (a folder written by diffuse train) or --model DIR (a model folder of ONNX components), one of them');
    if (v.model && v.geometric) throw new UsageError("--geometric searches a run's images; a model folder's watermark is checked as the image is");
    const port = num(v, 'port', { int: true, min: 0, max: 65535 }) as number;
    const key = v.key === undefined ? undefined : readKey(String(v.key));
    const trustAnchors = v.trust === undefined ? undefined : readTrustFile(String(v.trust));
    const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
    const source = v.model ? { model: String(v.model) } : { run: String(v.run) };
    // Before the server starts, progress lines ("bundling the page..."); after, what happened (a run the page left).
    let started = false;
    const studio = await startStudio({ ...source, port, host: String(v.host), inspect: { key, trustAnchors, device, geometric: Boolean(v.geometric) }, onProgress: (m) => process.stderr.write(started ? `${m}\n` : `${m}...\n`) });
    started = true;
    process.stderr.write(`${startLine(String(v.model ?? v.run), studio.url, String(v.host))}\n`);
    await new Promise<void>((resolve) => {
      const stop = () => void studio.stop().then(resolve);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};

/** The line the studio starts with: where to open it, and a warning when every machine on the network can. */
export function startLine(run: string, url: string, host: string): string {
  const open = isWildcardHost(host)
    ? `listening on ${url}: WARNING: on --host ${host} every machine on the network can use it (generate, inspect, and download the model; with --key, test images against your watermark key)`
    : `open ${url} (Ctrl-C stops it; no data leaves this machine)`;
  return `Diffuse studio for ${run}: ${open}`;
}
