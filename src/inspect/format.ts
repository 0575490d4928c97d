/**
 * The report's three faces: text for a terminal, a CSV row per image for a folder, and one
 * self-contained HTML page (images inlined) that an analyst can open or attach to a case.
 */
import { formatP, InspectReport } from './inspect.js';

/** The report on one image as indented lines for a terminal. */
export function reportText(r: InspectReport): string {
  if (r.error) return `${r.file}: ERROR ${r.error}\n`;
  const lines = [`${r.file} (${r.format ?? 'unknown format'}, ${r.width}x${r.height})`, `  verdict:     ${r.verdict?.summary} [rests on: ${r.verdict?.restsOn}]`];
  const cr = r.credentials;
  if (cr) {
    lines.push(`  credentials: ${cr.state}: ${cr.summary}`);
    const d = cr.claims?.diffuse;
    if (d) lines.push(`               made by: ${[d.operation, d.run && `run ${d.run}`, d.scheduler && `${d.scheduler} ${d.steps} steps`, d.seed !== undefined && `seed ${d.seed}`, d.prompt && `prompt "${d.prompt}"`, d.classLabel && `class ${d.classLabel}`, d.guidance !== undefined && `guidance ${d.guidance}`, d.watermarkPayload !== undefined && `watermark payload ${d.watermarkPayload}`, d.modelHash && `model ${d.modelHash.slice(0, 12)}`].filter(Boolean).join(', ')}`);
    if (cr.claims?.ingredients.length) lines.push(`               ingredients: ${cr.claims.ingredients.join(', ')}`);
  }
  const wm = r.watermark;
  if (wm) lines.push(`  watermark:   ${wm.status === 'skipped' ? `not checked: ${wm.reason}` : `${wm.detected ? `PRESENT, payload ${wm.payload}${wm.found ? `, image ${wm.found}` : wm.rotation ? `, image turned by ${wm.rotation} degrees` : ''}` : 'not found'} (p = ${formatP(wm.pValue, wm.log10P)}, decision at FPR ${wm.fpr}, ${wm.inversionSteps} inversion steps${wm.maxRotation ? `, turns up to ${wm.maxRotation} degrees searched` : ''}${wm.geometric ? ', turns and crops searched' : ''})`}`);
  const det = r.detector;
  if (det) {
    lines.push(
      `  detector:    ${det.status === 'skipped' ? `not run: ${det.reason}` : `probability ${(100 * det.probability).toFixed(1)}% that it is a sample of this model (score ${det.score.toFixed(2)}, ${det.flagged ? 'FLAGGED' : 'not flagged'} at the 1%-false-positive threshold, ${det.profile} calibration)${det.heatMap ? `; heat map ${det.heatMap}` : ''}`}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

const CSV_COLUMNS = ['file', 'error', 'format', 'width', 'height', 'verdict', 'rests_on', 'credentials', 'signer', 'watermark', 'watermark_p', 'payload', 'detector_probability', 'detector_flagged', 'heat_map'] as const;

/** The CSV header line. */
export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\n`;
}

/** One CSV row (RFC 4180 quoting). */
export function csvRow(r: InspectReport): string {
  const wm = r.watermark?.status === 'checked' ? r.watermark : undefined;
  const det = r.detector?.status === 'checked' ? r.detector : undefined;
  const cells: Record<(typeof CSV_COLUMNS)[number], string | number | boolean | undefined> = {
    file: r.file,
    error: r.error,
    format: r.format,
    width: r.width,
    height: r.height,
    verdict: r.verdict?.summary,
    rests_on: r.verdict?.restsOn,
    credentials: r.credentials?.state,
    signer: r.credentials?.claims?.signer,
    watermark: wm ? (wm.detected ? 'present' : 'not found') : r.watermark ? 'not checked' : undefined,
    watermark_p: wm ? formatP(wm.pValue, wm.log10P) : undefined,
    payload: wm?.payload,
    detector_probability: det?.probability.toFixed(4),
    detector_flagged: det?.flagged,
    heat_map: det?.heatMap,
  };
  return `${CSV_COLUMNS.map((c) => csvCell(cells[c])).join(',')}\n`;
}

function csvCell(v: string | number | boolean | undefined): string {
  if (v === undefined) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

/** Pictures of one image for the page: the file itself and its heat map, as data: URLs. */
export interface ReportPictures {
  image?: string;
  heatMap?: string;
}

/** One self-contained HTML page for all reports (no scripts, no external resources). */
export function reportHtml(reports: readonly { report: InspectReport; pictures: ReportPictures }[], o: { run: string; created: string }): string {
  const badge = (cls: string, text: string) => `<span class="badge ${cls}">${escapeHtml(text)}</span>`;
  const sections = reports.map(({ report: r, pictures }) => {
    if (r.error) return `<section><h2>${escapeHtml(r.file)}</h2><p class="error">Could not inspect: ${escapeHtml(r.error)}</p></section>`;
    const cr = r.credentials;
    const wm = r.watermark;
    const det = r.detector;
    const crCls = cr?.state === 'trusted' ? 'good' : cr?.state === 'invalid' ? 'bad' : cr?.state === 'untrusted' ? 'warn' : 'none';
    const d = cr?.claims?.diffuse;
    const claimRows = d
      ? Object.entries(d)
          .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
          .join('')
      : '';
    return `<section>
<h2>${escapeHtml(r.file)}</h2>
<p class="meta">${escapeHtml(r.format ?? 'unknown format')}, ${r.width}x${r.height}</p>
<p class="verdict">${escapeHtml(r.verdict?.summary ?? '')} <em>(rests on: ${escapeHtml(r.verdict?.restsOn ?? 'none')})</em></p>
<div class="pics">${pictures.image ? `<figure><img src="${pictures.image}" alt="the image"><figcaption>image</figcaption></figure>` : ''}${pictures.heatMap ? `<figure><img src="${pictures.heatMap}" alt="detector heat map"><figcaption>detector heat map: where the model sees what it would not have made (bright = more)</figcaption></figure>` : ''}</div>
<div class="signals">
<div class="signal"><h3>Content credentials ${badge(crCls, cr?.state ?? 'not read')}</h3><p>${escapeHtml(cr?.summary ?? '')}</p>${cr?.claims ? `<p>Signer: ${escapeHtml(cr.claims.signer ?? 'unknown')}${cr.claims.issuer ? `, issued by ${escapeHtml(cr.claims.issuer)}` : ''}${cr.claims.signedAt ? `, ${escapeHtml(cr.claims.signedAt)}` : ''}. Actions: ${escapeHtml(cr.claims.actions.map((a) => `${a.action}${a.softwareAgent ? ` by ${a.softwareAgent}` : ''}`).join('; ') || 'none')}.${cr.claims.ingredients.length ? ` Ingredients: ${escapeHtml(cr.claims.ingredients.join(', '))}.` : ''}</p>` : ''}${claimRows ? `<table>${claimRows}</table>` : ''}<p class="note">Absent credentials mean unknown provenance, not a fake. Valid but untrusted: intact, but anyone can make such a certificate.</p></div>
<div class="signal"><h3>Watermark ${wm?.status === 'checked' ? badge(wm.detected ? 'bad' : 'none', wm.detected ? 'present' : 'not found') : badge('none', 'not checked')}</h3><p>${wm?.status === 'checked' ? `p = ${escapeHtml(formatP(wm.pValue, wm.log10P))} (decision at false-positive rate ${wm.fpr}, ${wm.inversionSteps} DDIM inversion steps)${wm.detected ? `; payload ${wm.payload}` : ''}` : escapeHtml(wm?.reason ?? '')}</p><p class="note">Says whether this model made the image with this key. Stochastic sampling, heavy editing or regeneration remove it; "not found" is not proof of a real image.</p></div>
<div class="signal"><h3>Detector ${det?.status === 'checked' ? badge(det.flagged ? 'bad' : 'none', det.flagged ? 'flagged' : 'not flagged') : badge('none', 'not run')}</h3><p>${det?.status === 'checked' ? `Probability ${(100 * det.probability).toFixed(1)}% that it is a sample of this model (score ${det.score.toFixed(2)}, ${det.profile} calibration; flagged above the threshold that 1% of calibration real images exceed).` : escapeHtml(det?.reason ?? '')}</p><p class="note">A statistical signal about this model only, calibrated with equal numbers of real and generated images; other generators are not covered.</p></div>
</div>
</section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Diffuse inspect report</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-bottom:.2rem;word-break:break-all}h3{font-size:1rem;margin:.2rem 0}
section{border:1px solid #ddd;border-radius:8px;padding:1rem 1.2rem;margin:1.2rem 0}
.meta{color:#666;margin:.1rem 0}.verdict{font-weight:600;background:#f5f5f5;padding:.5rem .7rem;border-radius:6px}
.pics{display:flex;gap:1.5rem;flex-wrap:wrap}figure{margin:0}figure img{width:168px;height:168px;image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:.8rem;color:#555;max-width:168px}
.signals{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:1rem;margin-top:1rem}
.signal{background:#fafafa;border-radius:6px;padding:.6rem .8rem}.note{font-size:.8rem;color:#666}
.badge{font-size:.75rem;padding:.1rem .45rem;border-radius:99px;margin-left:.3rem;vertical-align:middle}
.good{background:#d9f2dd;color:#17601f}.bad{background:#fbd9d6;color:#8a1c12}.warn{background:#fdf0c8;color:#7a5a00}.none{background:#e8e8e8;color:#444}
table{font-size:.8rem;border-collapse:collapse;table-layout:fixed;width:100%}td{word-break:break-all}th{text-align:left;padding-right:.6rem;color:#555;font-weight:500}.error{color:#8a1c12}
</style></head><body>
<h1>Diffuse inspect report</h1>
<p class="meta">Model: run ${escapeHtml(o.run)}. Made ${escapeHtml(o.created)}. ${reports.length} image(s).</p>
${sections.join('\n')}
</body></html>
`;
}
