// Prints the operator's import graph health: cycles between modules and imports that point up
// the layer order (docs/controller.md). `node dev/import-graph.ts` prints figures; the unit test
// test/unit/controller/import-graph.test.ts fails on any cycle or upward import.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../operator");

/** Lower layers never import higher ones; modules of one layer may import each other. */
export const LAYERS: Record<string, number> = {
  api: 0,
  observability: 0,
  s3: 1,
  kube: 1,
  git: 1,
  data: 2,
  training: 2,
  evaluation: 3,
  promotion: 3,
  controller: 4,
  report: 4,
  "config.ts": 4,
  "main.ts": 5,
};

export type ImportGraph = { modules: string[]; edges: [string, string][] };

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : [],
  );
}

export function importGraph(root = ROOT): ImportGraph {
  const files = walk(root);
  const modules = files.map((f) => path.relative(root, f));
  const edges: [string, string][] = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    // Type-only imports count too: they tie the modules together just the same.
    for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gms)) {
      const target = path.relative(root, path.resolve(path.dirname(file), m[1]!));
      edges.push([path.relative(root, file), target]);
    }
  }
  return { modules, edges };
}

export const layerOf = (module: string) => LAYERS[module.split("/")[0]!] ?? 0;

export function upwardImports(g: ImportGraph): [string, string][] {
  return g.edges.filter(([from, to]) => layerOf(to) > layerOf(from));
}

/** Strongly connected components with more than one module (Tarjan). */
export function cycles(g: ImportGraph): string[][] {
  const next = new Map<string, string[]>(g.modules.map((m) => [m, []]));
  for (const [a, b] of g.edges) next.get(a)?.push(b);
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const m of g.modules) if (!index.has(m)) visit(m);
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const g = importGraph();
  const up = upwardImports(g);
  const cyc = cycles(g);
  console.log(
    `modules ${g.modules.length}, imports ${g.edges.length}, cycles ${cyc.length}, upward imports ${up.length}`,
  );
  for (const c of cyc) console.log(`cycle: ${c.join(" <-> ")}`);
  for (const [a, b] of up) console.log(`upward: ${a} -> ${b}`);
}
