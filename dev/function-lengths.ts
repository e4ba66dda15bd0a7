// Lists the functions longer than a bound, longest first: `node dev/function-lengths.ts 80 operator/**/*.ts`
// (declarations, methods, and arrow functions or function expressions bound to a name; lines from
// the first to the last line of the function, comments inside included).
import { readFileSync } from "node:fs";
import ts from "typescript";

export function longFunctions(files: readonly string[], min: number): { lines: number; where: string }[] {
  const out: { lines: number; where: string }[] = [];
  for (const file of files) {
    const src = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
    const visit = (n: ts.Node): void => {
      let name: string | undefined;
      if ((ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n)) && n.body) name = n.name?.getText(src);
      else if (ts.isArrowFunction(n) || ts.isFunctionExpression(n)) {
        const p = n.parent;
        if (ts.isVariableDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isPropertyAssignment(p))
          name = p.name.getText(src);
      }
      if (name) {
        const first = src.getLineAndCharacterOfPosition(n.getStart(src)).line;
        const lines = src.getLineAndCharacterOfPosition(n.getEnd()).line - first + 1;
        if (lines > min) out.push({ lines, where: `${file}:${first + 1} ${name}` });
      }
      ts.forEachChild(n, visit);
    };
    visit(src);
  }
  return out.sort((a, b) => b.lines - a.lines);
}

if (import.meta.main) {
  const [min, ...files] = process.argv.slice(2);
  for (const f of longFunctions(files, Number(min ?? 80))) console.log(f.lines, f.where);
}
