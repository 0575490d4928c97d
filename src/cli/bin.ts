/** Entry point of the `diffuse` command. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
