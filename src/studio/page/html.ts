/** The studio page's HTML: one page, three tabs; the bundle loads from /app.js. */
export const STUDIO_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Diffuse studio</title>
<link rel="icon" href="data:,">
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem auto;max-width:62rem;padding:0 1rem;color:#1b1b1b}
nav button{font-size:1rem;margin-right:.5rem;padding:.3rem .9rem;border:1px solid #bbb;background:#f4f4f4;border-radius:6px}
nav button.active{background:#13c;color:#fff;border-color:#13c}
canvas{border:1px solid #ccc;image-rendering:pixelated;margin-right:.8rem}
figure{display:inline-block;margin:0 1rem 0 0;vertical-align:top}figcaption{font-size:.8rem;color:#555}
label{margin-right:1rem;white-space:nowrap}.row{margin:.5rem 0}
#status,#step,#forward-info{font-family:ui-monospace,monospace;font-size:.9rem}
.drop{display:inline-block;border:2px dashed #999;border-radius:8px;padding:.6rem 1rem;color:#555;cursor:pointer;margin-right:.8rem}
.drop.over{border-color:#13c;background:#eef2ff}
.problem{color:#a3170b;font-weight:600}.ok{color:#17601f}.warn{color:#7a5a00;font-size:.85rem}
#inspect-report{width:100%;height:46rem;border:1px solid #ddd;border-radius:8px}
#source-canvas{cursor:crosshair;touch-action:none}
</style></head><body>
<h1 id="title">Diffuse studio</h1>
<nav><button id="tab-forward" class="active">Forward</button><button id="tab-generate">Generate</button><button id="tab-inspect">Inspect</button></nav>

<section id="panel-forward">
<p>The forward process: x_t = sqrt(alpha_bar(t)) x_0 + sqrt(1 - alpha_bar(t)) eps, in closed form.</p>
<div class="row"><label>image <select id="image"></select></label>
<span id="forward-drop" class="drop">drop your own image here (or click)</span><span id="forward-drop-status"></span></div>
<div class="row"><label>t <input id="t" type="range" min="0" max="999" value="250" style="width:20rem"></label>
<label><input id="compare" type="checkbox"> compare schedules</label></div>
<p id="forward-info"></p>
<figure><canvas id="x0"></canvas><figcaption>x_0</figcaption></figure>
<figure><canvas id="noise"></canvas><figcaption>the noise eps</figcaption></figure>
<figure><canvas id="xt"></canvas><figcaption>x_t</figcaption></figure>
<p><canvas id="plot" width="640" height="320"></canvas></p>
</section>

<section id="panel-generate" hidden>
<p id="generate-intro">The reverse process in your browser: the run's denoiser in onnxruntime-web, Diffuse's own pipeline and schedulers.</p>
<div class="row"><label>what <select id="mode"><option value="generate">generate from noise</option><option value="img2img">img2img (SDEdit)</option><option value="inpaint">inpaint (RePaint)</option></select></label>
<label>backend <select id="backend"></select></label></div>
<div class="row"><label>scheduler <select id="scheduler"></select></label>
<label>steps <input id="steps" type="number" value="20" min="1" style="width:4rem"></label>
<label id="eta-row">eta <input id="eta" type="number" value="0" step="0.1" min="0" style="width:4rem"></label>
<label>seed <input id="seed" type="number" value="0" style="width:5rem"></label></div>
<div class="row" id="cond-class-row" hidden><label>class <select id="cond-class"></select></label></div>
<div class="row" id="cond-text-row" hidden><label>prompt <input id="prompt" value="" style="width:18rem"></label>
<label>negative prompt <input id="negative" value="" style="width:12rem"></label> <span id="prompt-warnings" class="warn"></span></div>
<div class="row" id="size-row" hidden><label>size <input id="width" type="number" min="8" step="8" style="width:5rem"> x <input id="height" type="number" min="8" step="8" style="width:5rem"></label> <span class="warn">pixels; multiples of the autoencoder's factor</span></div>
<div class="row" id="guidance-row" hidden><label>guidance <input id="guidance" type="number" value="3" step="0.5" min="0" style="width:4rem"></label></div>
<div id="edit" hidden>
<div class="row"><label>source <select id="source"></select></label>
<span id="edit-drop" class="drop">drop an image to edit (or click)</span><span id="edit-drop-status"></span></div>
<div class="row" id="strength-row"><label>strength <input id="strength" type="number" value="0.6" step="0.05" min="0" max="1" style="width:4rem"></label></div>
<div class="row" id="mask-row">Paint the region to regenerate (drag; shift-drag erases).
<label>brush <input id="brush" type="number" value="3" min="1" max="14" style="width:3.5rem"></label><button id="clear-mask">clear mask</button></div>
<canvas id="source-canvas"></canvas>
</div>
<p><button id="generate" disabled>Generate</button></p>
<p id="status">loading...</p>
<p id="step"></p>
<figure><canvas id="gen-xt"></canvas><figcaption id="gen-xt-caption">x_t</figcaption></figure>
<figure><canvas id="gen-x0"></canvas><figcaption id="gen-x0-caption">x_0 estimate (the result when done)</figcaption></figure>
</section>

<section id="panel-inspect" hidden>
<p>An analyst's report on an image: the studio's server runs <code>diffuse inspect</code> on it, on this machine.</p>
<p id="inspect-checks"></p>
<div class="row"><span id="inspect-drop" class="drop">drop an image to inspect (or click)</span><span id="inspect-drop-status"></span></div>
<iframe id="inspect-report" title="inspect report" sandbox="" hidden></iframe>
</section>
<script type="module" src="/app.js"></script>
</body></html>
`;
