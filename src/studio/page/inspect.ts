/**
 * The Inspect tab: a dropped image goes to the studio's server (POST /api/inspect, on 127.0.0.1),
 * which runs `diffuse inspect` on it (content credentials, watermark, detector) and returns the
 * report; the page shows it as the same HTML page `diffuse inspect --html` writes.
 */
import type { InspectReport } from '../../inspect/inspect.js';
import type { StudioInfo } from '../info.js';
import { $ } from './dom.js';
import { decodeDropped, dropZone } from './dropped-file.js';

/** The server's answer: the report and its HTML page, or why it could not inspect. */
export type InspectResponse = { report: InspectReport; html: string } | { error: string };

export function setupInspect(info: StudioInfo): void {
  const said = $('inspect-drop-status');
  const checks = [
    info.inspect.trust ? 'content credentials against your trust anchors' : 'content credentials (no --trust given: valid signatures read as untrusted)',
    info.inspect.key ? 'the watermark with your key' : 'no watermark check (no --key given)',
    info.inspect.detector === 'calibrated' ? (info.kind === 'run' ? "the detector of this run's samples" : "the detector of this model's autoencoder") : `no detector (${info.inspect.detector})`,
  ];
  $('inspect-checks').textContent = `Checks: ${checks.join('; ')}.`;
  dropZone($('inspect-drop'), (file) => {
    void (async () => {
      const decoded = await decodeDropped(file);
      if (!decoded.ok) {
        said.textContent = decoded.problem;
        said.className = 'problem';
        return;
      }
      const { width, height } = decoded.bitmap;
      decoded.bitmap.close();
      // A run's model takes its own size; a model folder's, any size in whole latent cells (checked as it is, not resized).
      const wrongSize = info.kind === 'run' ? width !== info.shape[2] || height !== info.shape[1] : width % info.vaeScale !== 0 || height % info.vaeScale !== 0;
      const takes = info.kind === 'run' ? `this model takes ${info.shape[2]}x${info.shape[1]}` : `this model takes sides that are multiples of ${info.vaeScale}`;
      said.textContent = wrongSize ? `${file.name} is ${width}x${height}; ${takes}: its credentials are read, the watermark and detector cannot score it` : `${file.name}: inspecting (the watermark check inverts the model, a few seconds)...`;
      said.className = wrongSize ? 'problem' : 'ok';
      const res = await fetch('/api/inspect', { method: 'POST', headers: { 'X-File-Name': encodeURIComponent(file.name) }, body: file });
      const answer = (await res.json()) as InspectResponse;
      (window as unknown as { studioInspect?: InspectResponse }).studioInspect = answer;
      if ('error' in answer) {
        said.textContent = answer.error;
        said.className = 'problem';
        return;
      }
      if (!wrongSize) said.textContent = `${file.name}: ${answer.report.verdict?.summary ?? answer.report.error ?? ''}`;
      // The report page is shown as it is, in a frame that may run no scripts.
      $<HTMLIFrameElement>('inspect-report').srcdoc = answer.html;
      $('inspect-report').hidden = false;
    })().catch((e: Error) => {
      said.textContent = `error: ${e.message}`;
      said.className = 'problem';
    });
  });
}
