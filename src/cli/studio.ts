/** `diffuse studio`: a local web page to watch diffusion happen and generate in the browser. */
import { startStudio } from '../studio/studio.js';
import type { Command } from './flags.js';
import { UsageError, num } from './flags.js';

export const commandStudio: Command = {
  summary: 'serve a local page (127.0.0.1) to watch the forward and reverse processes and generate in the browser',
  usage: 'diffuse studio --run DIR [--port 8080] [--host 127.0.0.1]',
  options: {
    run: { type: 'string', description: 'the run folder' },
    port: { type: 'string', description: 'the port to listen on', default: '8080' },
    host: { type: 'string', description: 'the address to listen on (0.0.0.0 would let other machines in)', default: '127.0.0.1' },
  },
  async run(v) {
    if (!v.run) throw new UsageError('--run DIR is required (a folder written by diffuse train)');
    const port = num(v, 'port', { int: true, min: 0, max: 65535 }) as number;
    const studio = await startStudio({ run: String(v.run), port, host: String(v.host), onProgress: (m) => process.stderr.write(`${m}...\n`) });
    process.stderr.write(`Diffuse studio for ${String(v.run)}: open ${studio.url} (Ctrl-C stops it; no data leaves this machine)\n`);
    await new Promise<void>((resolve) => {
      const stop = () => void studio.stop().then(resolve);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};
