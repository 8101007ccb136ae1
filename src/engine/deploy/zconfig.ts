/**
 * The part of ZConfig (zope.conf, zeo.conf) that says where storages live:
 * sections `<name [title]> ... </name>`, `key value` lines, `%define NAME
 * value` with `$NAME` / `${NAME}` substitution, and comments. From it we take
 * every FileStorage: its `path`, its `blob-dir` (on the filestorage itself,
 * or on a surrounding `<blobstorage>`), and the database it belongs to
 * (`<zodb_db NAME>`, with its `mount-point`), or the zeo storage name.
 */

import { PloneBackupError } from '../errors';

export interface ZSection {
  type: string;
  name?: string;
  keys: [string, string][];
  children: ZSection[];
  line: number;
}

/** Parses ZConfig text into a tree; errors name the file and line. */
export function parseZConfig(text: string, file = 'zope.conf'): ZSection {
  const root: ZSection = { type: '', keys: [], children: [], line: 0 };
  const stack: ZSection[] = [root];
  const defines = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  const bad = (i: number, why: string): never => {
    throw new PloneBackupError('USAGE', `${file} line ${i + 1} cannot be read: ${why}.`, {
      path: file,
      position: i + 1,
      hint: 'Fix the configuration file or pass the storages with --file/--blob-dir.',
    });
  };
  const subst = (v: string, i: number): string =>
    v.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\$))/g, (_, a: string, b: string, dollar: string) => {
      if (dollar) return '$';
      const name = (a ?? b).toLowerCase();
      const val = defines.get(name);
      if (val === undefined) bad(i, `$${a ?? b} is not defined`);
      return val!;
    });
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (line.startsWith('%')) {
      const m = /^%(\w+)\s*(.*)$/.exec(line);
      if (!m) bad(i, 'unknown directive');
      if (m![1].toLowerCase() === 'define') {
        const d = /^(\S+)\s*(.*)$/.exec(m![2]);
        if (!d) bad(i, '%define needs a name');
        defines.set(d![1].toLowerCase(), subst(d![2], i));
      }
      // %import and %include are ignored: they do not define storages here.
      return;
    }
    if (line.startsWith('</')) {
      const m = /^<\/\s*([^\s>]+)\s*>$/.exec(line);
      if (!m) bad(i, 'a closing tag is malformed');
      const top = stack.pop();
      if (!top || stack.length === 0 || top.type !== m![1].toLowerCase()) bad(i, `</${m![1]}> closes nothing open`);
      return;
    }
    if (line.startsWith('<')) {
      const m = /^<\s*([^\s>/]+)(?:\s+([^>]*?))?\s*(\/)?>$/.exec(line);
      if (!m) bad(i, 'a section tag is malformed');
      const sec: ZSection = { type: m![1].toLowerCase(), name: m![2] ? subst(m![2], i) : undefined, keys: [], children: [], line: i + 1 };
      stack[stack.length - 1].children.push(sec);
      if (!m![3]) stack.push(sec);
      return;
    }
    // (s: a lone \r or \u2028 inside a line is part of its value, not an end)
    const m = /^(\S+)\s*(.*)$/s.exec(line);
    if (!m) bad(i, 'a line is neither a key nor a section');
    stack[stack.length - 1].keys.push([m![1].toLowerCase(), subst(m![2], i)]);
  });
  if (stack.length !== 1) bad(lines.length - 1, `<${stack[stack.length - 1].type}> is never closed`);
  return root;
}

export function key(sec: ZSection, name: string): string | undefined {
  const k = sec.keys.find(([n]) => n === name);
  return k?.[1];
}

export interface ZStorage {
  /** The database name (zodb_db) or zeo storage name; undefined for a lone storage. */
  db?: string;
  mountPoint?: string;
  path: string;
  blobDir?: string;
}

/** Every FileStorage the configuration names, in file order. */
export function storagesOf(root: ZSection): ZStorage[] {
  const out: ZStorage[] = [];
  const walk = (sec: ZSection, db: string | undefined, mount: string | undefined, blobDir: string | undefined) => {
    for (const c of sec.children) {
      if (c.type === 'zodb_db') walk(c, c.name, key(c, 'mount-point'), undefined);
      else if (c.type === 'blobstorage') walk(c, db ?? c.name, mount, key(c, 'blob-dir'));
      else if (c.type === 'filestorage') {
        const p = key(c, 'path');
        if (p) out.push({ db: db ?? c.name, mountPoint: mount, path: p, blobDir: key(c, 'blob-dir') ?? blobDir });
      } else walk(c, db, mount, blobDir);
    }
  };
  walk(root, undefined, undefined, undefined);
  return out;
}
