/**
 * Sample-quality metrics in a feature space.
 *
 * Fréchet distance (Heusel et al. 2017): ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)),
 * with Tr((S_a S_b)^(1/2)) computed as the sum of square roots of the eigenvalues of
 * S_a^(1/2) S_b S_a^(1/2) (symmetric, so a symmetric eigendecomposition suffices).
 * Precision and recall: the k-nearest-neighbour manifold estimate of Kynkäänniemi et al. 2019.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';

export function meanAndCovariance(x: Float32Array, n: number, d: number): { mean: Float64Array; cov: Matrix } {
  if (n < 2) throw new Error(`meanAndCovariance: needs at least 2 samples, got ${n}`);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const centered = new Matrix(n, d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) centered.set(i, j, x[i * d + j] - mean[j]);
  const cov = centered.transpose().mmul(centered).div(n - 1);
  return { mean, cov };
}

function symmetricSqrt(m: Matrix): Matrix {
  const e = new EigenvalueDecomposition(m, { assumeSymmetric: true });
  const v = e.eigenvectorMatrix;
  const roots = e.realEigenvalues.map((l) => Math.sqrt(Math.max(0, l)));
  return v.mmul(Matrix.diag(roots)).mmul(v.transpose());
}

/** Fréchet distance between the Gaussians fitted to two feature sets [n, d]. */
export function frechetDistance(a: Float32Array, na: number, b: Float32Array, nb: number, d: number): number {
  const A = meanAndCovariance(a, na, d);
  const B = meanAndCovariance(b, nb, d);
  let diff = 0;
  for (let j = 0; j < d; j++) diff += (A.mean[j] - B.mean[j]) ** 2;
  const sa = symmetricSqrt(A.cov);
  const inner = sa.mmul(B.cov).mmul(sa);
  const e = new EigenvalueDecomposition(inner.add(inner.transpose()).div(2), { assumeSymmetric: true });
  const trSqrt = e.realEigenvalues.reduce((s, l) => s + Math.sqrt(Math.max(0, l)), 0);
  return diff + A.cov.trace() + B.cov.trace() - 2 * trSqrt;
}

function squaredDistances(a: Float32Array, na: number, b: Float32Array, nb: number, d: number): Float64Array {
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++)
    for (let j = 0; j < nb; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) {
        const t = a[i * d + k] - b[j * d + k];
        s += t * t;
      }
      out[i * nb + j] = s;
    }
  return out;
}

/** Squared distance from each point to its k-th nearest other point in the same set. */
function kthRadius(self: Float64Array, n: number, k: number): Float64Array {
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const row = Array.from(self.subarray(i * n, (i + 1) * n)).sort((x, y) => x - y);
    r[i] = row[Math.min(k, n - 1)]; // row[0] is the point itself
  }
  return r;
}

/**
 * Precision: the fraction of generated samples inside the real manifold (some real
 * point's k-NN ball); recall: the fraction of real samples inside the generated manifold.
 */
export function precisionRecall(real: Float32Array, nr: number, gen: Float32Array, ng: number, d: number, k = 3): { precision: number; recall: number } {
  const rr = kthRadius(squaredDistances(real, nr, real, nr, d), nr, k);
  const gg = kthRadius(squaredDistances(gen, ng, gen, ng, d), ng, k);
  const rg = squaredDistances(real, nr, gen, ng, d);
  let inReal = 0;
  for (let j = 0; j < ng; j++) {
    for (let i = 0; i < nr; i++)
      if (rg[i * ng + j] <= rr[i]) {
        inReal++;
        break;
      }
  }
  let inGen = 0;
  for (let i = 0; i < nr; i++) {
    for (let j = 0; j < ng; j++)
      if (rg[i * ng + j] <= gg[j]) {
        inGen++;
        break;
      }
  }
  return { precision: inReal / ng, recall: inGen / nr };
}

/** Fraction of samples whose top class probability is at least `threshold`, and the class histogram. */
export function confidence(probs: Float32Array, n: number, classes: number, threshold = 0.9): { confident: number; histogram: number[] } {
  let confident = 0;
  const histogram = new Array(classes).fill(0);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (probs[i * classes + c] > probs[i * classes + best]) best = c;
    histogram[best]++;
    if (probs[i * classes + best] >= threshold) confident++;
  }
  return { confident: confident / n, histogram };
}

/** Scores sorted high to low, grouped by equal score: [score, positives, negatives] per group. */
function scoreGroups(pos: readonly number[], neg: readonly number[]): [number, number, number][] {
  const all = [...pos.map((s) => [s, 1] as const), ...neg.map((s) => [s, 0] as const)].sort((a, b) => b[0] - a[0]);
  const groups: [number, number, number][] = [];
  for (const [s, label] of all) {
    const last = groups[groups.length - 1];
    if (last && last[0] === s) last[label ? 1 : 2]++;
    else groups.push([s, label, 1 - label]);
  }
  return groups;
}

/** Area under the ROC curve: the chance that a random positive scores above a random negative (ties count half). */
export function rocAuc(pos: readonly number[], neg: readonly number[]): number {
  if (!pos.length || !neg.length) throw new Error('rocAuc needs positives and negatives');
  let below = neg.length;
  let sum = 0;
  for (const [, p, n] of scoreGroups(pos, neg)) {
    below -= n;
    sum += p * (below + n / 2);
  }
  return sum / (pos.length * neg.length);
}

/**
 * Average precision, as scikit-learn's average_precision_score defines it: sum over thresholds of
 * (recall_k - recall_{k-1}) * precision_k, all images with one score entering together.
 */
export function averagePrecision(pos: readonly number[], neg: readonly number[]): number {
  if (!pos.length) throw new Error('averagePrecision needs positives');
  let tp = 0;
  let fp = 0;
  let sum = 0;
  for (const [, p, n] of scoreGroups(pos, neg)) {
    tp += p;
    fp += n;
    sum += (p / pos.length) * (tp / (tp + fp));
  }
  return sum;
}
