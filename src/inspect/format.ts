/**
 * The report's three faces: text for a terminal, a CSV row per image for a folder, and one
 * self-contained HTML page (images inlined) that an analyst can open or attach to a case.
 */
import type { InspectReport } from './report.js';
import { formatP } from './verdict.js';
import { describePayload } from '../forensics/gaussian-shading.js';

/**
 * A field from a file, safe to print on a terminal: control characters (newlines, escape
 * sequences that move the cursor or recolour text) and bidirectional overrides are shown as
 * escapes, so a crafted manifest or prompt cannot forge report lines.
 */
export function safeText(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** A long field shortened for one report line. */
function clip(s: string, n = 160): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** The report on one image as indented lines for a terminal (every field from the file escaped). */
export function reportText(r: InspectReport): string {
  if (r.error) return `${safeText(r.file)}: ERROR ${safeText(r.error)}\n`;
  const lines = [`${r.file} (${r.format ?? 'unknown format'}, ${r.width}x${r.height})`, `  verdict:     ${r.verdict?.summary} [rests on: ${r.verdict?.restsOn}]`];
  const cr = r.credentials;
  if (cr) {
    lines.push(`  credentials: ${cr.state}${cr.integrity ? ` (${cr.integrity})` : ''}: ${cr.summary}`);
    if (cr.origin) {
      const o = cr.origin;
      lines.push(`               origin: ${o.action}${o.sourceType ? `, ${o.sourceType} (${o.sourceWords})` : ', no source type'}${o.softwareAgent ? `, software ${o.softwareAgent}` : ''}${o.model ? `, model ${o.model}` : ''}${o.generator ? `, claim generator ${o.generator}` : ''}${o.depth ? ` (in an ingredient's manifest, ${o.depth} level${o.depth > 1 ? 's' : ''} back)` : ''}`);
    }
    for (const m of cr.chain ?? []) {
      const acts = m.actions.map((a) => `${a.action}${a.digitalSourceType ? ` [${a.digitalSourceType.split('/').pop()}]` : ''}${a.softwareAgent ? ` by ${a.softwareAgent}` : ''}`).join(', ');
      lines.push(`               ${'  '.repeat(m.depth)}manifest${m.depth ? ` via ${m.via ?? 'an ingredient'}` : ' (active)'}: ${m.generator ?? 'unnamed generator'}, signer ${m.signer ?? 'unknown'}${m.issuer ? ` (${m.issuer})` : ''}${m.signedAt ? `, ${m.timeStamped ? 'time-stamped' : 'signed'} ${m.signedAt}` : ''}; actions: ${acts || 'none'}`);
    }
    const d = cr.claims?.diffuse;
    if (d) lines.push(`               made by: ${[d.operation, d.run && `run ${d.run}`, d.scheduler && `${d.scheduler} ${d.steps} steps`, d.seed !== undefined && `seed ${d.seed}`, d.prompt && `prompt "${d.prompt}"`, d.classLabel && `class ${d.classLabel}`, d.guidance !== undefined && `guidance ${d.guidance}`, d.watermarkPayload !== undefined && `watermark payload ${d.watermarkPayload}`, d.modelHash && `model ${d.modelHash.slice(0, 12)}`].filter(Boolean).join(', ')}`);
    if (cr.claims?.ingredients.length) lines.push(`               ingredients: ${cr.claims.ingredients.join(', ')}`);
  }
  const md = r.metadata;
  if (md) {
    const parts: string[] = [];
    for (const g of md.generators) {
      const f = [g.model && `model ${g.model}`, g.modelHash && `hash ${g.modelHash}`, g.seed !== undefined && `seed ${g.seed}`, g.sampler && `sampler ${g.sampler}`, g.scheduler && `scheduler ${g.scheduler}`, g.steps !== undefined && `${g.steps} steps`, g.guidance !== undefined && `guidance ${g.guidance}`, g.size && `size ${g.size}`, g.version && `version ${g.version}`].filter(Boolean);
      lines.push(`  metadata:    ${g.tool} (${g.foundIn}): ${f.join(', ') || 'no parameters'}`);
      if (g.prompt) lines.push(`               prompt: "${clip(g.prompt)}"`);
      if (g.negativePrompt) lines.push(`               negative prompt: "${clip(g.negativePrompt)}"`);
    }
    if (md.sourceType) parts.push(`source type ${md.sourceType.name} (${md.sourceType.words}; ${md.sourceType.foundIn})`);
    if (md.software) parts.push(`software ${md.software}`);
    if (md.camera) parts.push(`camera ${md.camera}`);
    if (md.description) parts.push(`description "${clip(md.description, 80)}"`);
    if (md.remoteManifest) parts.push(`remote manifest ${md.remoteManifest}`);
    if (md.hidden) parts.push(`hidden in the ${md.hidden.channel === 'alpha' ? 'alpha channel' : 'RGB'} low bits: ${md.hidden.fields.join(', ') || 'unreadable'}`);
    if (md.novelaiSignature) parts.push(`NovelAI signature ${md.novelaiSignature.status.toUpperCase()} (${md.novelaiSignature.key}'s key${md.novelaiSignature.detail ? `; ${md.novelaiSignature.detail}` : ''})`);
    if (parts.length || !md.generators.length) lines.push(`  ${md.generators.length ? '             ' : 'metadata:    '}${parts.join('; ') || 'no generation parameters, source type, software or camera'}`);
    for (const p of md.problems) lines.push(`               note: ${p}`);
  }
  const ow = r.openWatermark;
  if (ow) {
    lines.push(
      `  SD mark:     ${ow.status === 'skipped' ? `not read: ${ow.reason}` : `${ow.found ? 'FOUND' : 'not found'}: best reading ${ow.name}, ${ow.matched}/${ow.bits} bits (${ow.conventionWords}), p = ${ow.pValue.toExponential(1)}, ${ow.correctedP.toExponential(1)} over ${ow.tested} readings (found below ${ow.alpha})`}`,
    );
  }
  const wm = r.watermark;
  if (wm) lines.push(`  watermark:   ${wm.status === 'skipped' ? `not checked: ${wm.reason}` : `${wm.detected ? `PRESENT, ${payloadWords(wm)}${wm.found ? `, image ${wm.found}` : wm.rotation ? `, image turned by ${wm.rotation} degrees` : ''}` : 'not found'} (p = ${formatP(wm.pValue, wm.log10P)}, decision at FPR ${wm.fpr}, ${wm.inversionSteps} inversion steps${wm.maxRotation ? `, turns up to ${wm.maxRotation} degrees searched` : ''}${wm.geometric ? ', turns and crops searched' : ''})`}`);
  const det = r.detector;
  if (det) {
    lines.push(
      `  detector:    ${det.status === 'skipped' ? `not run: ${det.reason}` : `probability ${(100 * det.probability).toFixed(1)}% that it is a sample of this model (score ${det.score.toFixed(2)}, ${det.flagged ? 'FLAGGED' : 'not flagged'} at the 1%-false-positive threshold, ${det.profile} calibration)${det.heatMap ? `; heat map ${det.heatMap}` : ''}`}`,
    );
  }
  return `${lines.map(safeText).join('\n')}\n`;
}

const CSV_COLUMNS = ['file', 'error', 'format', 'width', 'height', 'verdict', 'rests_on', 'credentials', 'integrity', 'signer', 'declared_source_type', 'generator_tool', 'generator_model', 'generator_seed', 'prompt', 'xmp_source_type', 'novelai_signature', 'sd_mark', 'sd_mark_bits', 'sd_mark_p', 'watermark', 'watermark_p', 'payload', 'payload_reliability', 'payload_uncertain_bits', 'detector_probability', 'detector_flagged', 'heat_map'] as const;

/** The CSV header line. */
export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\n`;
}

/** One CSV row (RFC 4180 quoting). */
export function csvRow(r: InspectReport): string {
  const ow = r.openWatermark?.status === 'checked' ? r.openWatermark : undefined;
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
    integrity: r.credentials?.integrity,
    signer: r.credentials?.claims?.signer,
    declared_source_type: r.credentials?.origin?.sourceType,
    generator_tool: r.metadata?.generators[0]?.tool,
    generator_model: r.metadata?.generators[0]?.model,
    generator_seed: r.metadata?.generators[0]?.seed,
    prompt: r.metadata?.generators[0]?.prompt,
    xmp_source_type: r.metadata?.sourceType?.name,
    novelai_signature: r.metadata?.novelaiSignature?.status,
    sd_mark: ow ? (ow.found ? ow.mark : 'not found') : r.openWatermark ? 'not read' : undefined,
    sd_mark_bits: ow ? `${ow.matched}/${ow.bits}` : undefined,
    sd_mark_p: ow?.correctedP.toExponential(2),
    watermark: wm ? (wm.detected ? 'present' : 'not found') : r.watermark ? 'not checked' : undefined,
    watermark_p: wm ? formatP(wm.pValue, wm.log10P) : undefined,
    payload: wm?.payloadBits === 0 ? undefined : wm?.payload,
    payload_reliability: wm?.payloadReliability?.toFixed(4),
    payload_uncertain_bits: wm?.uncertainBits?.join(' '),
    detector_probability: det?.probability.toFixed(4),
    detector_flagged: det?.flagged,
    heat_map: det?.heatMap,
  };
  return `${CSV_COLUMNS.map((c) => csvCell(cells[c])).join(',')}\n`;
}

/**
 * One cell. A text starting with =, +, -, @, tab or carriage return is a formula to a spreadsheet
 * (a prompt or signer name could run one when the analyst opens the CSV): it gets a leading
 * apostrophe, which spreadsheets show as text. Numbers are written as they are.
 */
function csvCell(v: string | number | boolean | undefined): string {
  if (v === undefined) return '';
  let s = String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

/** Pictures of one image for the page: the file itself and its heat map, as data: URLs. */
export interface ReportPictures {
  image?: string;
  heatMap?: string;
}

/** One self-contained HTML page for all reports (no scripts, no external resources). */
export function reportHtml(reports: readonly { report: InspectReport; pictures: ReportPictures }[], o: { run?: string; created: string }): string {
  return `${reportHtmlHead({ ...o, count: reports.length })}${reports.map(({ report, pictures }) => reportHtmlSection(report, pictures)).join('\n')}\n${REPORT_HTML_TAIL}`;
}

/** The end of the page that reportHtmlHead starts. */
export const REPORT_HTML_TAIL = '</body></html>\n';

/** One image's section of the page (streamed between reportHtmlHead and REPORT_HTML_TAIL for any number of images). */
export function reportHtmlSection(r: InspectReport, pictures: ReportPictures = {}): string {
  const badge = (cls: string, text: string) => `<span class="badge ${cls}">${escapeHtml(text)}</span>`;
  {
    if (r.error) return `<section><h2>${escapeHtml(r.file)}</h2><p class="error">Could not inspect: ${escapeHtml(r.error)}</p></section>`;
    const cr = r.credentials;
    const wm = r.watermark;
    const det = r.detector;
    const crCls = cr?.state === 'trusted' ? 'good' : cr?.state === 'invalid' ? 'bad' : cr?.state === 'untrusted' || cr?.state === 'remote' ? 'warn' : 'none';
    const md = r.metadata;
    const chainRows = (cr?.chain ?? [])
      .map((m) => `<tr><td>${m.depth ? `${'&nbsp;&nbsp;'.repeat(m.depth)}via ${escapeHtml(m.via ?? 'ingredient')}` : 'active'}<br>${escapeHtml(m.generator ?? '')}</td><td>${escapeHtml(m.signer ?? 'unknown')}${m.issuer ? ` (${escapeHtml(m.issuer)})` : ''}${m.signedAt ? `<br>${m.timeStamped ? 'time-stamped' : 'signed'} ${escapeHtml(m.signedAt)}` : ''}</td><td>${escapeHtml(m.actions.map((a) => `${a.action}${a.digitalSourceType ? ` [${a.digitalSourceType.split('/').pop()}]` : ''}${a.softwareAgent ? ` by ${a.softwareAgent}` : ''}${a.model ? ` (${a.model})` : ''}`).join('; ') || 'none')}</td></tr>`)
      .join('');
    const metaHtml = [
      ...(md?.generators ?? []).map(
        (g) =>
          `<table><tr><th>tool</th><td>${escapeHtml(g.tool)} <em>(${escapeHtml(g.foundIn)})</em></td></tr>${(['model', 'modelHash', 'prompt', 'negativePrompt', 'seed', 'sampler', 'scheduler', 'steps', 'guidance', 'size', 'version'] as const)
            .filter((k) => g[k] !== undefined)
            .map((k) => `<tr><th>${k}</th><td>${escapeHtml(String(g[k]))}</td></tr>`)
            .join('')}</table>`,
      ),
      md?.sourceType ? `<p>Digital source type: ${escapeHtml(`${md.sourceType.name} (${md.sourceType.words}), in ${md.sourceType.foundIn}`)}</p>` : '',
      md?.software || md?.camera ? `<p>${escapeHtml([md.software && `Software: ${md.software}`, md.camera && `Camera: ${md.camera}`].filter(Boolean).join('. '))}</p>` : '',
      md?.remoteManifest ? `<p>Remote manifest: ${escapeHtml(md.remoteManifest)} (not fetched)</p>` : '',
      md?.hidden ? `<p>Hidden in the ${md.hidden.channel === 'alpha' ? 'alpha channel' : 'RGB'} low bits: ${escapeHtml(md.hidden.fields.join(', ') || 'unreadable')}</p>` : '',
      md?.novelaiSignature ? `<p><strong>NovelAI signature: ${escapeHtml(md.novelaiSignature.status)}</strong> (${escapeHtml(md.novelaiSignature.key)}'s key; ${escapeHtml(md.novelaiSignature.foundIn)}${md.novelaiSignature.detail ? `; ${escapeHtml(md.novelaiSignature.detail)}` : ''})</p>` : '',
    ].join('');
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
<div class="pics">${pictures.image ? `<figure><img src="${pictures.image}"${pictures.image.startsWith('data:image/png') ? ' class="px"' : ''} alt="the image"><figcaption>image</figcaption></figure>` : ''}${pictures.heatMap ? `<figure><img class="px" src="${pictures.heatMap}" alt="detector heat map"><figcaption>detector heat map: where the model sees what it would not have made (bright = more)</figcaption></figure>` : ''}</div>
<div class="signals">
<div class="signal"><h3>Content credentials ${badge(crCls, cr ? `${cr.state}${cr.integrity && cr.integrity !== 'intact' ? ` (${cr.integrity})` : ''}` : 'not read')}</h3><p>${escapeHtml(cr?.summary ?? '')}</p>${cr?.origin ? `<p><strong>Origin declared:</strong> ${escapeHtml(`${cr.origin.action}${cr.origin.sourceType ? `, ${cr.origin.sourceType} (${cr.origin.sourceWords})` : ''}${cr.origin.softwareAgent ? `, software ${cr.origin.softwareAgent}` : ''}${cr.origin.model ? `, model ${cr.origin.model}` : ''}`)}</p>` : ''}${chainRows ? `<table><tr><th>manifest</th><th>signer</th><th>actions</th></tr>${chainRows}</table>` : ''}${claimRows ? `<table>${claimRows}</table>` : ''}<p class="note">Absent credentials mean unknown provenance, not a fake. Intact but untrusted: the file is as signed, but the signer is not on your trust list (or its certificate has expired): a question of trust, not of tampering.</p></div>
<div class="signal"><h3>Metadata ${badge(md?.generators.length || md?.sourceType?.generative ? 'warn' : 'none', md?.generators.length ? md.generators.map((g) => g.tool).join(', ') : md?.sourceType ? md.sourceType.name : 'no generator record')}</h3>${metaHtml}<p class="note">Declared, not proven: anyone can write or strip metadata, and most sites strip it on upload.</p></div>
${r.openWatermark ? `<div class="signal"><h3>Stable Diffusion invisible mark ${r.openWatermark.status === 'checked' ? badge(r.openWatermark.found ? 'bad' : 'none', r.openWatermark.found ? `found: ${r.openWatermark.mark}` : 'not found') : badge('none', 'not read')}</h3><p>${r.openWatermark.status === 'checked' ? escapeHtml(`Best reading: ${r.openWatermark.name}, ${r.openWatermark.matched} of ${r.openWatermark.bits} bits (${r.openWatermark.conventionWords}); p = ${r.openWatermark.pValue.toExponential(1)}, ${r.openWatermark.correctedP.toExponential(1)} over the ${r.openWatermark.tested} readings tried.`) : escapeHtml(r.openWatermark.reason)}</p><p class="note">The open dwtDct mark of the SD 1.x/2.x scripts and SDXL pipelines. Anyone can add it; JPEG (even at quality 90) and resizing remove it, so "not found" says little.</p></div>` : ''}
${wm ? `<div class="signal"><h3>Diffuse watermark ${wm.status === 'checked' ? badge(wm.detected ? 'bad' : 'none', wm.detected ? 'present' : 'not found') : badge('none', 'not checked')}</h3><p>${wm.status === 'checked' ? `p = ${escapeHtml(formatP(wm.pValue, wm.log10P))} (decision at false-positive rate ${wm.fpr}, ${wm.inversionSteps} DDIM inversion steps)${wm.detected ? `; ${escapeHtml(payloadWords(wm))}` : ''}` : escapeHtml(wm.reason)}</p><p class="note">Says whether this model made the image with this key. Stochastic sampling, heavy editing or regeneration remove it; "not found" is not proof of a real image.</p></div>` : ''}
${det ? `<div class="signal"><h3>Detector ${det.status === 'checked' ? badge(det.flagged ? 'bad' : 'none', det.flagged ? 'flagged' : 'not flagged') : badge('none', 'not run')}</h3><p>${det.status === 'checked' ? `Probability ${(100 * det.probability).toFixed(1)}% that it is a sample of this model (score ${det.score.toFixed(2)}, ${det.profile} calibration; flagged above the threshold that 1% of calibration real images exceed).` : escapeHtml(det.reason)}</p><p class="note">A statistical signal about this model only, calibrated with equal numbers of real and generated images; other generators are not covered.</p></div>` : ''}
</div>
</section>`;
  }
}

/** The page's head and title, for `count` images. */
export function reportHtmlHead(o: { run?: string; created: string; count: number }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Diffuse inspect report</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-bottom:.2rem;word-break:break-all}h3{font-size:1rem;margin:.2rem 0}
section{border:1px solid #ddd;border-radius:8px;padding:1rem 1.2rem;margin:1.2rem 0}
.meta{color:#666;margin:.1rem 0}.verdict{font-weight:600;background:#f5f5f5;padding:.5rem .7rem;border-radius:6px}
.pics{display:flex;gap:1.5rem;flex-wrap:wrap}figure{margin:0}figure img{max-width:256px;max-height:256px;border:1px solid #ccc}figure img.px{width:168px;height:168px;image-rendering:pixelated}
figcaption{font-size:.8rem;color:#555;max-width:168px}
.signals{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:1rem;margin-top:1rem}
.signal{background:#fafafa;border-radius:6px;padding:.6rem .8rem}.note{font-size:.8rem;color:#666}
.badge{font-size:.75rem;padding:.1rem .45rem;border-radius:99px;margin-left:.3rem;vertical-align:middle}
.good{background:#d9f2dd;color:#17601f}.bad{background:#fbd9d6;color:#8a1c12}.warn{background:#fdf0c8;color:#7a5a00}.none{background:#e8e8e8;color:#444}
table{font-size:.8rem;border-collapse:collapse;table-layout:fixed;width:100%}td{word-break:break-all}th{text-align:left;padding-right:.6rem;color:#555;font-weight:500}.error{color:#8a1c12}
</style></head><body>
<h1>Diffuse inspect report</h1>
<p class="meta">${o.run ? `Model: run ${escapeHtml(o.run)}. ` : 'File-level signals only (no Diffuse run given). '}Made ${escapeHtml(o.created)}. ${o.count} image(s).</p>
`;
}

/** A detected watermark's payload in words, with what its votes say of it where the report has that. */
function payloadWords(wm: { payload?: number; payloadBits?: number; payloadReliability?: number; uncertainBits?: number[] }): string {
  if (wm.payloadBits === 0) return 'no payload (the key carries none)';
  if (wm.payload === undefined) return 'payload unknown';
  if (wm.payloadReliability === undefined || !wm.uncertainBits) return `payload ${wm.payload}`;
  return describePayload({ payload: wm.payload, payloadBits: wm.payloadBits ?? 32, reliability: wm.payloadReliability, uncertainBits: wm.uncertainBits });
}
