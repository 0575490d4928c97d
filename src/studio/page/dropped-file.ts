/**
 * Files dropped on the page: checked before anything uses them, and the problem said in words
 * next to the drop zone (not an image, cannot be decoded, another size than the model's).
 */

/** A decoded image as the model sees it, or why it cannot be used. */
export type DroppedImage =
  | { ok: true; data: Float32Array; width: number; height: number; note?: string }
  | { ok: false; problem: string; width?: number; height?: number };

const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif', 'image/bmp', 'image/avif'];

/** Decodes a dropped file, or says why it is not an image the page can read. */
export async function decodeDropped(file: File): Promise<{ ok: true; bitmap: ImageBitmap } | { ok: false; problem: string }> {
  if (!IMAGE_TYPES.includes(file.type)) return { ok: false, problem: `${file.name} is not an image the page can read (${file.type || 'unknown type'}; PNG, JPEG, WebP, GIF, BMP or AVIF)` };
  try {
    return { ok: true, bitmap: await createImageBitmap(file) };
  } catch {
    return { ok: false, problem: `${file.name} could not be decoded as an image (damaged or truncated?)` };
  }
}

/** Decodes a dropped file into [C, size, size] values in [-1, 1]; colour to grey by Rec. 601 luma where the model is grey. */
export async function readDroppedImage(file: File, [c, size]: [number, number, number]): Promise<DroppedImage> {
  const decoded = await decodeDropped(file);
  if (!decoded.ok) return decoded;
  const { bitmap } = decoded;
  const { width, height } = bitmap;
  if (width !== size || height !== size) {
    bitmap.close();
    return { ok: false, problem: `${file.name} is ${width}x${height}; this model takes ${size}x${size} images`, width, height };
  }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d') as OffscreenCanvasRenderingContext2D;
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const px = ctx.getImageData(0, 0, width, height).data;
  const plane = width * height;
  const data = new Float32Array(c * plane);
  let coloured = false;
  for (let i = 0; i < plane; i++) {
    const [r, g, b] = [px[4 * i], px[4 * i + 1], px[4 * i + 2]];
    if (r !== g || g !== b) coloured = true;
    if (c === 1) data[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 127.5 - 1;
    else for (let k = 0; k < c; k++) data[k * plane + i] = [r, g, b][Math.min(k, 2)] / 127.5 - 1;
  }
  return { ok: true, data, width, height, ...(c === 1 && coloured ? { note: 'a colour image: converted to grey for this grey model' } : {}) };
}

/** Makes an element a drop zone (and a click-to-choose file picker) that hands over the first file. */
export function dropZone(zone: HTMLElement, onFile: (file: File) => void): void {
  const picker = document.createElement('input');
  picker.type = 'file';
  picker.hidden = true;
  picker.id = `${zone.id}-file`;
  zone.after(picker);
  zone.addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    if (picker.files?.[0]) onFile(picker.files[0]);
    picker.value = '';
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const f = e.dataTransfer?.files[0];
    if (f) onFile(f);
  });
}
