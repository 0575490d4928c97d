/** The studio tests' browser: Debian's Chromium (.ci/run installs it). Missing, the tests fail rather than skip. */
import { Browser, Page, chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Chromium's switches for WebGPU without a GPU: the SwiftShader software adapter. */
export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];

/** Headless Chromium without background traffic, with extra switches (WEBGPU_FLAGS); also used by bench/studio.ts. */
export function launchChromium(args: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', ...args] });
}

/** Hooks the page sets for tests (src/studio/page/generate.ts, inspect.ts). */
export interface Hooks {
  studioReady?: boolean;
  studioLast?: number[];
  studioMask?: number[];
  studioInspect?: unknown;
}

/** Opens the studio in headless Chromium, waits until the model is loaded, and collects page errors. */
export async function openStudio(url: string, args: string[] = []): Promise<{ browser: Browser; page: Page; errors: string[] }> {
  const browser = await launchChromium(args);
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForFunction(() => (window as unknown as Hooks).studioReady === true, null, { timeout: 60_000 });
  return { browser, page, errors };
}

/** Clicks Generate and returns the image the page made (studioLast), once it is there. */
export async function generateInPage(page: Page): Promise<number[]> {
  await page.evaluate(() => {
    delete (window as unknown as Hooks).studioLast;
    (document.getElementById('status') as HTMLElement).textContent = '';
  });
  await page.click('#generate');
  await page.waitForFunction(() => Array.isArray((window as unknown as Hooks).studioLast) || /^error/.test(document.getElementById('status')?.textContent ?? ''), null, { timeout: 120_000 });
  const status = (await page.textContent('#status')) ?? '';
  if (status.startsWith('error')) throw new Error(`the page says: ${status}`);
  return page.evaluate(() => (window as unknown as Hooks).studioLast as number[]);
}

export { maxDiff } from '../numeric.js';
