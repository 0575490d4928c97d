/**
 * The PyTorch builds the benches compare with. The anchor is the strongest one a user would pick:
 * `--python PATH` (or DIFFUSE_BENCH_PYTHON) naming a Python with PyTorch 2.x, for example a venv
 * with the wheel from the local wheelhouse (docs/BENCHMARKS.md says how). Debian's
 * `/usr/bin/python3` with `python3-torch` (1.13, reference BLAS) is kept as a second row when it is
 * there. Each build's version and its BLAS / oneDNN configuration are printed beside the numbers.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { flag } from './args.js';

export interface TorchPython {
  /** The interpreter. */
  python: string;
  /** 'PyTorch 2.x.y' */
  label: string;
  /** torch.__version__, its BLAS, oneDNN and thread count, in one line. */
  config: string;
}

const PROBE = `
import torch, re
cfg = torch.__config__.show()
def find(key):
    m = re.search(key + r'=([^,\\n]+)', cfg)
    return m.group(1).strip() if m else '?'
print(torch.__version__)
print(f"BLAS {find('BLAS_INFO')}, LAPACK {find('LAPACK_INFO')}, oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'} ({find('USE_MKLDNN')}), CPU capability {torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, 'cpu') else '?'}")
`;

function probe(python: string): TorchPython | undefined {
  if (!existsSync(python)) return undefined;
  const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const [version, config] = r.stdout.trim().split('\n');
  return { python, label: `PyTorch ${version}`, config: `${python}: torch ${version}; ${config}` };
}

/**
 * The builds to compare with, anchor first: --python / DIFFUSE_BENCH_PYTHON, then Debian's. Empty
 * with --no-torch or when none has torch (the benches then report Diffuse alone and say why).
 */
export function torchPythons(): TorchPython[] {
  if (process.argv.includes('--no-torch')) return [];
  const asked = flag('python') ?? process.env.DIFFUSE_BENCH_PYTHON;
  const out: TorchPython[] = [];
  if (asked) {
    const p = probe(asked);
    if (!p) throw new Error(`--python ${asked}: not a Python with torch (make one: python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --no-index --find-links /opt/pypi/files --find-links /opt/wheels torch numpy)`);
    out.push(p);
  }
  const debian = '/usr/bin/python3';
  if (asked !== debian) {
    const p = probe(debian);
    if (p) out.push({ ...p, label: `${p.label} (Debian)` });
  }
  return out;
}
