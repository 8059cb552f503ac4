import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';
import ts from 'typescript';

/** Module specifiers a source imports: static, `import type`, `export … from`, `import()` and `typeof import()`; comments skipped. */
function importSpecifiers(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((file) => file.fileName);
}

/** The .ts files under a folder, as paths from the project root with forward slashes. */
function sourceFiles(folder: string): string[] {
  return readdirSync(folder, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => join(folder, name).split('\\').join('/'))
    .sort();
}

/** Each file's relative imports of other files in the set (`./x.js` is `./x.ts` on disk). */
function importGraph(files: string[]): Map<string, string[]> {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const targets = importSpecifiers(readFileSync(file, 'utf8'))
      .filter((specifier) => specifier.startsWith('./') || specifier.startsWith('../'))
      .map((specifier) => relative('.', resolve(dirname(file), specifier.replace(/\.js$/, '.ts'))).split('\\').join('/'))
      .filter((target) => known.has(target));
    graph.set(file, [...new Set(targets)].sort());
  }
  return graph;
}

/** The shortest import chain from `start` back to itself, or undefined when there is none. */
function shortestCycleThrough(graph: Map<string, string[]>, start: string): string[] | undefined {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const file = queue[head]!;
    for (const target of graph.get(file) ?? []) {
      if (target === start) {
        const chain = [start];
        for (let step: string | undefined = file; step !== start && step !== undefined; step = cameFrom.get(step)) chain.splice(1, 0, step);
        return [...chain, start];
      }
      if (!cameFrom.has(target)) {
        cameFrom.set(target, file);
        queue.push(target);
      }
    }
  }
  return undefined;
}

/** Every file's shortest cycle, each cycle once, written `a.ts -> b.ts -> a.ts` from its first file in sort order. */
function importCycles(graph: Map<string, string[]>): string[] {
  const cycles = new Set<string>();
  for (const file of graph.keys()) {
    const cycle = shortestCycleThrough(graph, file)?.slice(0, -1);
    if (cycle === undefined) continue;
    const first = cycle.indexOf([...cycle].sort()[0]!);
    const rotated = [...cycle.slice(first), ...cycle.slice(0, first)];
    cycles.add([...rotated, rotated[0]].join(' -> '));
  }
  return [...cycles].sort();
}

t.test('the import reader sees every kind of import and skips comments', async (t) => {
  const source = [
    "import { a } from './a.js';",
    "import type { B } from '../b.js';",
    "import {\n  c,\n  type C,\n} from './c.js';",
    "export { d } from './d.js';",
    "export type * from './e.js';",
    "const f = await import('./f.js');",
    "let g: typeof import('./g.js');",
    "// import { h } from './h.js';",
    "import fastify from 'fastify';",
  ].join('\n');
  t.same(importSpecifiers(source), ['./a.js', '../b.js', './c.js', './d.js', './e.js', './f.js', './g.js', 'fastify']);
});

t.test('a cycle is named as a chain of files, once, from its first file', async (t) => {
  const graph = new Map([
    ['src/c.ts', ['src/a.ts']],
    ['src/a.ts', ['src/b.ts', 'src/d.ts']],
    ['src/b.ts', ['src/c.ts']],
    ['src/d.ts', ['src/d.ts']],
    ['src/e.ts', ['src/a.ts']],
  ]);
  t.same(importCycles(graph), ['src/a.ts -> src/b.ts -> src/c.ts -> src/a.ts', 'src/d.ts -> src/d.ts']);
});

t.test('src/ has no import cycle', async (t) => {
  const graph = importGraph(sourceFiles('src'));
  const imports = [...graph.values()].reduce((sum, targets) => sum + targets.length, 0);
  t.ok(imports > graph.size, `the graph was read: ${graph.size} files, ${imports} relative imports`);
  t.same(importCycles(graph), [], 'each chain is a cycle of imports to break');
});
