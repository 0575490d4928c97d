/**
 * The generation parameters that Stable Diffusion front ends and NovelAI write into their files,
 * each read the way that tool writes it:
 *
 * | tool | where | format |
 * |---|---|---|
 * | AUTOMATIC1111 (and Forge, SD.Next) | PNG text `parameters`; JPEG/WebP EXIF UserComment | prompt lines, `Negative prompt: ...`, then `Steps: 20, Sampler: ..., Seed: ...` |
 * | Fooocus | PNG text `parameters` (JSON) with `fooocus_scheme` | JSON |
 * | ComfyUI | PNG text `prompt` (the API graph) and `workflow` (the editor's graph) | JSON node graph |
 * | InvokeAI | `invokeai_metadata` (3.x+), `sd-metadata` (2.x), `Dream` (1.x) | JSON / a dream command line |
 * | NovelAI | `Software` "NovelAI", `Source`, `Description`, `Comment` (JSON) | JSON |
 *
 * All of it is declared, not proven: anyone can write or strip it.
 */

/** What a file says about how it was generated. */
export interface GenerationInfo {
  /** The tool that wrote it. */
  tool: string;
  /** Where in the file it was found, e.g. 'PNG text "parameters"'. */
  foundIn: string;
  model?: string;
  modelHash?: string;
  prompt?: string;
  negativePrompt?: string;
  seed?: number | string;
  sampler?: string;
  scheduler?: string;
  steps?: number;
  guidance?: number;
  size?: string;
  version?: string;
}

/** Text fields of a file by name: PNG text keywords, and 'UserComment', 'Software', ... from EXIF. */
export type TextFields = ReadonlyMap<string, { text: string; foundIn: string }>;

/** Every generator record the fields hold (usually one). */
export function parseGenerators(fields: TextFields): GenerationInfo[] {
  const out: GenerationInfo[] = [];
  const get = (k: string) => fields.get(k);
  const params = get('parameters');
  if (params) {
    const json = tryJson(params.text);
    if (json && typeof json === 'object') out.push(fooocus(json as Record<string, unknown>, params.foundIn));
    else if (/(^|\n)Steps: /.test(params.text)) out.push(automatic1111(params.text, params.foundIn));
  }
  const comment = get('UserComment');
  if (comment && /(^|\n)Steps: /.test(comment.text)) out.push(automatic1111(comment.text, comment.foundIn));
  const comfy = get('prompt');
  if (comfy) {
    const graph = tryJson(comfy.text);
    if (graph && typeof graph === 'object') {
      const c = comfyui(graph as Record<string, ComfyNode>, comfy.foundIn);
      if (c) out.push(c);
    }
  }
  const invoke = get('invokeai_metadata');
  if (invoke) out.push(invokeai3(tryJson(invoke.text) as Record<string, unknown> | undefined, invoke.foundIn));
  const sdMeta = get('sd-metadata');
  if (sdMeta && !invoke) out.push(invokeai2(tryJson(sdMeta.text) as Record<string, unknown> | undefined, sdMeta.foundIn));
  const dream = get('Dream');
  if (dream && !invoke && !sdMeta) out.push(invokeaiDream(dream.text, dream.foundIn));
  const software = get('Software');
  if (software && /^NovelAI/i.test(software.text.trim())) out.push(novelai(fields, software.foundIn));
  return out;
}

function tryJson(s: string): unknown {
  const t = s.trim();
  if (!t.startsWith('{')) return undefined;
  try {
    return JSON.parse(t);
  } catch {
    return undefined;
  }
}

const num = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
};
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined);
/** A seed as a number when it is a safe integer, else as its digits (ComfyUI seeds exceed 2^53). */
const seedOf = (v: unknown): number | string | undefined => {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : String(v);
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  return undefined;
};

/** Drops undefined fields, so reports list only what the file says. */
function clean(g: GenerationInfo): GenerationInfo {
  return Object.fromEntries(Object.entries(g).filter(([, v]) => v !== undefined && v !== '')) as unknown as GenerationInfo;
}

/**
 * AUTOMATIC1111's infotext: the prompt, an optional `Negative prompt:` line, and a last line of
 * `Key: value` pairs separated by ', ' (a value may be quoted, e.g. `Hashes: {...}` or "a, b").
 */
export function automatic1111(text: string, foundIn: string): GenerationInfo {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  let paramsAt = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/^Steps: /.test(lines[i])) {
      paramsAt = i;
      break;
    }
  }
  const params = paramsAt >= 0 ? infotextPairs(lines.slice(paramsAt).join('\n')) : new Map<string, string>();
  const head = paramsAt >= 0 ? lines.slice(0, paramsAt) : lines;
  const negAt = head.findIndex((l) => l.startsWith('Negative prompt:'));
  const prompt = (negAt >= 0 ? head.slice(0, negAt) : head).join('\n').trim();
  const negativePrompt = negAt >= 0 ? head.slice(negAt).join('\n').replace(/^Negative prompt:\s?/, '').trim() : undefined;
  const version = params.get('Version');
  return clean({
    tool: version?.startsWith('f') ? 'Stable Diffusion WebUI Forge' : 'AUTOMATIC1111 Stable Diffusion WebUI',
    foundIn,
    model: params.get('Model'),
    modelHash: params.get('Model hash'),
    prompt,
    negativePrompt,
    seed: seedOf(params.get('Seed')),
    sampler: params.get('Sampler'),
    scheduler: params.get('Schedule type'),
    steps: num(params.get('Steps')),
    guidance: num(params.get('CFG scale')),
    size: params.get('Size'),
    version,
  });
}

/** `Key: value, Key: "quoted, value", Key: {json}` as a map. */
function infotextPairs(s: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /\s*([\w ().+/-]+):\s*("(?:\\.|[^\\"])*"|\{[^}]*\}|[^,]*)(?:,|$)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    if (m[0] === '') {
      re.lastIndex++;
      continue;
    }
    let v = m[2].trim();
    if (v.startsWith('"')) {
      try {
        v = JSON.parse(v) as string;
      } catch {
        v = v.slice(1, -1);
      }
    }
    out.set(m[1].trim(), v);
  }
  return out;
}

function fooocus(j: Record<string, unknown>, foundIn: string): GenerationInfo {
  return clean({
    tool: 'Fooocus',
    foundIn,
    model: str(j.base_model),
    modelHash: str(j.base_model_hash),
    prompt: str(j.prompt),
    negativePrompt: str(j.negative_prompt),
    seed: seedOf(j.seed),
    sampler: str(j.sampler),
    scheduler: str(j.scheduler),
    steps: num(j.steps),
    guidance: num(j.guidance_scale),
    size: str(j.resolution),
    version: str(j.version),
  });
}

interface ComfyNode {
  class_type?: string;
  inputs?: Record<string, unknown>;
}

/**
 * ComfyUI's API graph: the sampler node (KSampler and its kin), the checkpoint it is fed from, and
 * the text of the conditioning nodes its `positive` and `negative` inputs link to (an input that
 * is a link is [nodeId, outputIndex]).
 */
function comfyui(graph: Record<string, ComfyNode>, foundIn: string): GenerationInfo | undefined {
  const nodes = Object.entries(graph).filter(([, n]) => n && typeof n === 'object' && typeof n.class_type === 'string');
  if (!nodes.length) return undefined;
  const isLink = (v: unknown): v is [string | number, number] => Array.isArray(v) && v.length === 2 && (typeof v[0] === 'string' || typeof v[0] === 'number');
  const node = (v: unknown) => (isLink(v) ? graph[String(v[0])] : undefined);
  /** The text of a conditioning input, following links through nodes that pass conditioning on. */
  const textOf = (v: unknown, depth = 0): string | undefined => {
    const n = node(v);
    if (!n?.inputs || depth > 16) return undefined;
    for (const k of ['text', 'text_g', 'prompt', 'positive']) if (typeof n.inputs[k] === 'string') return n.inputs[k] as string;
    for (const k of ['conditioning', 'conditioning_1', 'conditioning_to', 'text']) if (isLink(n.inputs[k])) return textOf(n.inputs[k], depth + 1);
    return undefined;
  };
  /** The checkpoint name behind a model input. */
  const modelOf = (v: unknown, depth = 0): string | undefined => {
    const n = node(v);
    if (!n?.inputs || depth > 16) return undefined;
    for (const k of ['ckpt_name', 'unet_name', 'model_name']) if (typeof n.inputs[k] === 'string') return n.inputs[k] as string;
    return isLink(n.inputs.model) ? modelOf(n.inputs.model, depth + 1) : undefined;
  };
  const sampler = nodes.map(([, n]) => n).find((n) => /KSampler|SamplerCustom/.test(n.class_type as string));
  const i = sampler?.inputs ?? {};
  const checkpoint = nodes.map(([, n]) => n).find((n) => /CheckpointLoader|UNETLoader/.test(n.class_type as string));
  return clean({
    tool: 'ComfyUI',
    foundIn,
    model: modelOf(i.model) ?? str(checkpoint?.inputs?.ckpt_name) ?? str(checkpoint?.inputs?.unet_name),
    prompt: textOf(i.positive),
    negativePrompt: textOf(i.negative),
    seed: seedOf(i.seed ?? i.noise_seed),
    sampler: str(i.sampler_name),
    scheduler: str(i.scheduler),
    steps: num(i.steps),
    guidance: num(i.cfg),
  });
}

function invokeai3(j: Record<string, unknown> | undefined, foundIn: string): GenerationInfo {
  const model = j?.model as Record<string, unknown> | string | undefined;
  return clean({
    tool: 'InvokeAI',
    foundIn,
    model: typeof model === 'string' ? model : str(model?.model_name) ?? str(model?.name),
    prompt: str(j?.positive_prompt),
    negativePrompt: str(j?.negative_prompt),
    seed: seedOf(j?.seed),
    sampler: str(j?.scheduler),
    steps: num(j?.steps),
    guidance: num(j?.cfg_scale),
    size: j?.width && j?.height ? `${String(j.width)}x${String(j.height)}` : undefined,
    version: str(j?.app_version),
  });
}

function invokeai2(j: Record<string, unknown> | undefined, foundIn: string): GenerationInfo {
  const img = (j?.image ?? {}) as Record<string, unknown>;
  const prompts = Array.isArray(img.prompt) ? (img.prompt as { prompt?: string }[]).map((p) => p.prompt).filter(Boolean).join(' ') : str(img.prompt);
  const { prompt, negativePrompt } = splitBracketNegatives(prompts ?? '');
  return clean({
    tool: 'InvokeAI',
    foundIn,
    model: str(j?.model_weights),
    modelHash: str(j?.model_hash),
    prompt,
    negativePrompt,
    seed: seedOf(img.seed),
    sampler: str(img.sampler),
    steps: num(img.steps),
    guidance: num(img.cfg_scale),
    size: img.width && img.height ? `${String(img.width)}x${String(img.height)}` : undefined,
    version: str(j?.app_version),
  });
}

/** InvokeAI 1.x's dream command: `"prompt" -s 50 -S 1234 -W 512 -H 512 -C 7.5 -A k_lms`. */
function invokeaiDream(text: string, foundIn: string): GenerationInfo {
  const m = /^\s*"((?:\\.|[^"\\])*)"\s*(.*)$/s.exec(text);
  const prompts = m ? m[1] : '';
  const flags = new Map<string, string>();
  for (const f of (m ? m[2] : text).matchAll(/-(\w)\s+(\S+)/g)) flags.set(f[1], f[2]);
  const { prompt, negativePrompt } = splitBracketNegatives(prompts);
  return clean({
    tool: 'InvokeAI',
    foundIn,
    prompt,
    negativePrompt,
    seed: seedOf(flags.get('S')),
    sampler: flags.get('A'),
    steps: num(flags.get('s')),
    guidance: num(flags.get('C')),
    size: flags.get('W') && flags.get('H') ? `${flags.get('W')}x${flags.get('H')}` : undefined,
  });
}

/** InvokeAI writes negative prompts in square brackets inside the prompt. */
function splitBracketNegatives(s: string): { prompt?: string; negativePrompt?: string } {
  const neg = [...s.matchAll(/\[([^\]]*)\]/g)].map((m) => m[1].trim()).filter(Boolean);
  const pos = s
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\s*,\s*(,\s*)+/g, ', ')
    .replace(/^[\s,]+|[\s,]+$/g, '');
  return { prompt: pos || undefined, negativePrompt: neg.length ? neg.join(', ') : undefined };
}

function novelai(fields: TextFields, foundIn: string): GenerationInfo {
  const comment = fields.get('Comment');
  const j = (comment ? tryJson(comment.text) : undefined) as Record<string, unknown> | undefined;
  const source = fields.get('Source')?.text;
  return clean({
    tool: 'NovelAI',
    foundIn: comment ? `${foundIn}, ${comment.foundIn}` : foundIn,
    model: source,
    prompt: str(j?.prompt) ?? fields.get('Description')?.text,
    negativePrompt: str(j?.uc),
    seed: seedOf(j?.seed),
    sampler: str(j?.sampler),
    steps: num(j?.steps),
    guidance: num(j?.scale),
    size: j?.width && j?.height ? `${String(j.width)}x${String(j.height)}` : undefined,
  });
}
