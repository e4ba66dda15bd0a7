// An in-memory file system for isomorphic-git's bare repositories: the operator's pod has a
// read-only root file system and no volume, and a sync needs only one branch tip's objects, which
// live as long as the sync does. Implements the promise API isomorphic-git calls (readFile,
// writeFile, mkdir, rmdir, unlink, stat, lstat, readdir, readlink, symlink) with Node's error codes.

type Node = ({ kind: "file"; data: Uint8Array } | { kind: "dir" }) & { mtimeMs: number; ino: number };

let inodes = 0;

class FsError extends Error {
  readonly code: string;
  constructor(code: string, op: string, p: string) {
    super(`${code}: ${op} '${p}'`);
    this.code = code;
  }
}

const normalize = (p: string) => {
  const parts: string[] = [];
  for (const s of p.split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") parts.pop();
    else parts.push(s);
  }
  return "/" + parts.join("/");
};
const parentOf = (p: string) => (p === "/" ? "/" : p.slice(0, p.lastIndexOf("/")) || "/");

function stats(node: Node) {
  const size = node.kind === "file" ? node.data.byteLength : 0;
  return {
    isFile: () => node.kind === "file",
    isDirectory: () => node.kind === "dir",
    isSymbolicLink: () => false,
    size,
    mode: node.kind === "file" ? 0o100644 : 0o40755,
    mtimeMs: node.mtimeMs,
    ctimeMs: node.mtimeMs,
    ino: node.ino,
    uid: 0,
    gid: 0,
    dev: 1,
  };
}

export class MemoryFs {
  readonly #nodes = new Map<string, Node>([["/", { kind: "dir", mtimeMs: 0, ino: ++inodes }]]);
  /** Bytes held in files: what a sync keeps in memory. */
  get bytes(): number {
    let n = 0;
    for (const v of this.#nodes.values()) if (v.kind === "file") n += v.data.byteLength;
    return n;
  }

  #dir(p: string, op: string): void {
    const parent = this.#nodes.get(parentOf(p));
    if (!parent) throw new FsError("ENOENT", op, p);
    if (parent.kind !== "dir") throw new FsError("ENOTDIR", op, p);
  }

  // One promise API object: isomorphic-git binds these methods.
  readonly promises = {
    readFile: async (file: string, options?: string | { encoding?: string }) => {
      const p = normalize(file);
      const node = this.#nodes.get(p);
      if (!node) throw new FsError("ENOENT", "open", p);
      if (node.kind === "dir") throw new FsError("EISDIR", "read", p);
      const encoding = typeof options === "string" ? options : options?.encoding;
      return encoding ? Buffer.from(node.data).toString(encoding as BufferEncoding) : Buffer.from(node.data);
    },
    writeFile: async (file: string, data: string | Uint8Array, options?: string | { encoding?: string }) => {
      const p = normalize(file);
      this.#dir(p, "open");
      if (this.#nodes.get(p)?.kind === "dir") throw new FsError("EISDIR", "open", p);
      const encoding = typeof options === "string" ? options : options?.encoding;
      const bytes =
        typeof data === "string" ? Buffer.from(data, (encoding as BufferEncoding) ?? "utf8") : Uint8Array.from(data);
      this.#nodes.set(p, { kind: "file", data: bytes, mtimeMs: Date.now(), ino: ++inodes });
    },
    mkdir: async (dir: string) => {
      const p = normalize(dir);
      if (this.#nodes.has(p)) throw new FsError("EEXIST", "mkdir", p);
      this.#dir(p, "mkdir");
      this.#nodes.set(p, { kind: "dir", mtimeMs: Date.now(), ino: ++inodes });
    },
    rmdir: async (dir: string) => {
      const p = normalize(dir);
      const node = this.#nodes.get(p);
      if (!node) throw new FsError("ENOENT", "rmdir", p);
      if (node.kind !== "dir") throw new FsError("ENOTDIR", "rmdir", p);
      if (this.#children(p).length) throw new FsError("ENOTEMPTY", "rmdir", p);
      this.#nodes.delete(p);
    },
    unlink: async (file: string) => {
      const p = normalize(file);
      const node = this.#nodes.get(p);
      if (!node) throw new FsError("ENOENT", "unlink", p);
      if (node.kind === "dir") throw new FsError("EISDIR", "unlink", p);
      this.#nodes.delete(p);
    },
    stat: async (file: string) => this.#stat(file, "stat"),
    lstat: async (file: string) => this.#stat(file, "lstat"),
    readdir: async (dir: string) => {
      const p = normalize(dir);
      const node = this.#nodes.get(p);
      if (!node) throw new FsError("ENOENT", "scandir", p);
      if (node.kind !== "dir") throw new FsError("ENOTDIR", "scandir", p);
      return this.#children(p);
    },
    readlink: async (file: string) => {
      throw new FsError(this.#nodes.has(normalize(file)) ? "EINVAL" : "ENOENT", "readlink", file);
    },
    symlink: async (_target: string, file: string) => {
      throw new FsError("EPERM", "symlink", file);
    },
  };

  #stat(file: string, op: string) {
    const p = normalize(file);
    const node = this.#nodes.get(p);
    if (!node) throw new FsError("ENOENT", op, p);
    return stats(node);
  }

  #children(p: string): string[] {
    const prefix = p === "/" ? "/" : `${p}/`;
    const names: string[] = [];
    for (const k of this.#nodes.keys()) {
      if (k !== p && k.startsWith(prefix) && !k.slice(prefix.length).includes("/")) names.push(k.slice(prefix.length));
    }
    return names.sort();
  }
}
