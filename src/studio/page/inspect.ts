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
  const size = info.shape[1];
  const said = $('inspect-drop-status');
  const checks = [
    info.inspect.trust ? 'content credentials against your trust anchors' : 'content credentials (no --trust given: valid signatures read as untrusted)',
    info.inspect.key ? 'the watermark with your key' : 'no watermark check (no --key given)',
    info.inspect.detector === 'calibrated' ? "the detector of this run's samples" : `no detector (${info.inspect.detector})`,
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
      const wrongSize = width !== size || height !== size;
      said.textContent = wrongSize ? `${file.name} is ${width}x${height}; this model takes ${size}x${size}: its credentials are read, the watermark and detector cannot score it` : `${file.name}: inspecting (the watermark check inverts the model, a few seconds)...`;
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
