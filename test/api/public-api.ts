/**
 * The public API as TypeScript sees it: for the root and each folder entry point that
 * package.json exports, its values (functions, classes, constants) and its types. docs/API.md
 * is this, rendered; test/api/api.test.ts keeps the two equal, so that the public surface changes
 * only on purpose. `node --import tsx test/api/write-api-doc.ts` rewrites the page.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

const repo = path.resolve(import.meta.dirname, '..', '..');

/** The entry points package.json exports: '.' and './engine', ... with their source files. */
export function entryPoints(): { name: string; source: string }[] {
  const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { exports: Record<string, { import: string }> };
  return Object.entries(pkg.exports).map(([key, v]) => ({
    name: key === '.' ? 'diffuse' : `diffuse/${key.slice(2)}`,
    source: path.join(repo, v.import.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts')),
  }));
}

export interface EntryApi {
  name: string;
  values: string[];
  types: string[];
}

/** Every entry point's exported names, values and types apart, sorted. */
export function publicApi(): EntryApi[] {
  const entries = entryPoints();
  const program = ts.createProgram(
    entries.map((e) => e.source),
    { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true },
  );
  const checker = program.getTypeChecker();
  return entries.map(({ name, source }) => {
    const file = program.getSourceFile(source);
    if (!file) throw new Error(`${source}: not found`);
    const module = checker.getSymbolAtLocation(file);
    if (!module) throw new Error(`${source}: not a module`);
    const values: string[] = [];
    const types: string[] = [];
    for (const s of checker.getExportsOfModule(module)) {
      const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      (target.flags & ts.SymbolFlags.Value ? values : types).push(s.getName());
    }
    // Code-point order: the same on every machine, whatever its locale.
    const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    return { name, values: values.sort(byName), types: types.sort(byName) };
  });
}

/** docs/API.md's text for an API. */
export function renderApi(api: EntryApi[]): string {
  const lines = [
    '# Public API',
    '',
    "Every name Diffuse exports, by entry point. `import { DiffusionPipeline } from 'diffuse'` reaches the",
    "root: the pipelines, schedulers, training, the watermark, the detectors and the analyst's report.",
    "Each folder of `src/` is an entry point of its own for code that goes deeper",
    "(`import { TrainStep } from 'diffuse/engine'`). Names not listed here are internal and may change.",
    'The documentation of each name is its doc comment in `src/`.',
    '',
    'This page is generated from the sources (`node --import tsx test/api/write-api-doc.ts`), and',
    '`test/api/api.test.ts` fails when it and the sources disagree.',
  ];
  for (const e of api) {
    lines.push('', `## \`${e.name}\``, '', `${e.values.length} values, ${e.types.length} types.`, '');
    if (e.values.length) lines.push(`Values: ${e.values.map((n) => `\`${n}\``).join(', ')}.`, '');
    if (e.types.length) lines.push(`Types: ${e.types.map((n) => `\`${n}\``).join(', ')}.`, '');
  }
  return `${lines.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}
