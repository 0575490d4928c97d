/** The studio page's HTML: one page, the bundle loads from /app.js. */
export const STUDIO_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Diffuse studio</title>
<link rel="icon" href="data:,">
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem auto;max-width:60rem;padding:0 1rem;color:#1b1b1b}
nav button{font-size:1rem;margin-right:.5rem;padding:.3rem .9rem}
canvas{border:1px solid #ccc;image-rendering:pixelated;margin-right:.8rem}
figure{display:inline-block;margin:0 1rem 0 0}figcaption{font-size:.8rem;color:#555}
label{margin-right:1rem}#status,#step,#forward-info{font-family:ui-monospace,monospace;font-size:.9rem}
</style></head><body>
<h1 id="title">Diffuse studio</h1>
<nav><button id="tab-forward">Forward</button><button id="tab-generate">Generate</button></nav>
<section id="panel-forward">
<p>The forward process: x_t = sqrt(alpha_bar(t)) x_0 + sqrt(1 - alpha_bar(t)) eps, in closed form.</p>
<label>image <select id="image"></select></label>
<label>t <input id="t" type="range" min="0" max="999" value="250" style="width:20rem"></label>
<label><input id="compare" type="checkbox"> compare schedules</label>
<p id="forward-info"></p>
<figure><canvas id="x0"></canvas><figcaption>x_0</figcaption></figure>
<figure><canvas id="noise"></canvas><figcaption>the noise eps</figcaption></figure>
<figure><canvas id="xt"></canvas><figcaption>x_t</figcaption></figure>
<p><canvas id="plot" width="640" height="320"></canvas></p>
</section>
<section id="panel-generate" hidden>
<p>The reverse process in your browser: the run's denoiser in onnxruntime-web (wasm), Diffuse's schedulers.</p>
<label>scheduler <select id="scheduler"></select></label>
<label>steps <input id="steps" type="number" value="20" min="1" style="width:4rem"></label>
<label>eta <input id="eta" type="number" value="0" step="0.1" style="width:4rem"></label>
<label>seed <input id="seed" type="number" value="0" style="width:5rem"></label>
<button id="generate" disabled>Generate</button>
<p id="status">loading...</p>
<p id="step"></p>
<figure><canvas id="gen-xt"></canvas><figcaption>x_t</figcaption></figure>
<figure><canvas id="gen-x0"></canvas><figcaption>x_0 estimate</figcaption></figure>
</section>
<script type="module" src="/app.js"></script>
</body></html>
`;
