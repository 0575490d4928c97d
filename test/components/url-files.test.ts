import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { urlModelFiles } from '../../src/components/index.js';

/** A fake server: paths to [status for HEAD, status and body for GET]. */
function fakeFetch(routes: Record<string, { head: number; get: number; body?: string }>, log: string[]): typeof fetch {
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const method = init?.method ?? 'GET';
    log.push(`${method} ${url}`);
    const r = routes[url] ?? { head: 404, get: 404 };
    return new Response(method === 'HEAD' ? null : (r.body ?? ''), { status: method === 'HEAD' ? r.head : r.get });
  }) as typeof fetch;
}

describe('urlModelFiles: a model folder at a URL', () => {
  it('reads configs, says what is absent (404), names the URL of any other failure, and asks with GET where HEAD is refused', async () => {
    const log: string[] = [];
    const files = urlModelFiles('https://models.example/tiny', ort, {
      fetch: fakeFetch(
        {
          'https://models.example/tiny/model_index.json': { head: 200, get: 200, body: '{"_class_name": "DiffusePipeline"}' },
          'https://models.example/tiny/unet/model.onnx_data': { head: 405, get: 200 },
          'https://models.example/tiny/unet/config.json': { head: 500, get: 500 },
        },
        log,
      ),
    });
    assert.equal(files.where(), 'https://models.example/tiny/');
    assert.equal(files.where('unet', 'model.onnx'), 'https://models.example/tiny/unet/model.onnx');
    assert.equal(await files.readText('model_index.json'), '{"_class_name": "DiffusePipeline"}');
    assert.equal(await files.readText('scheduler', 'scheduler_config.json'), undefined);
    assert.equal(await files.exists('vae_encoder', 'model.onnx'), false);
    assert.equal(await files.exists('unet', 'model.onnx_data'), true);
    assert.deepEqual(log.slice(-2), ['HEAD https://models.example/tiny/unet/model.onnx_data', 'GET https://models.example/tiny/unet/model.onnx_data']);
    await assert.rejects(files.readText('unet', 'config.json'), /https:\/\/models\.example\/tiny\/unet\/config\.json: the server answered 500/);
    await assert.rejects(files.exists('unet', 'config.json'), /the server answered 500/);
    // Path parts are names inside the folder: escaped, and never '..'.
    assert.equal(files.where('unet', 'x y#?'), 'https://models.example/tiny/unet/x%20y%23%3F');
    assert.throws(() => files.where('..', 'secret.json'), /'\.\.' is not a file name inside the model folder/);
  });
});
