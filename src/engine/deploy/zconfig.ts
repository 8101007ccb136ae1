/**
 * The part of ZConfig (zope.conf, zeo.conf) that says where storages live:
 * sections `<name [title]> ... </name>`, `key value` lines, `%define NAME
 * value` with `$NAME` / `${NAME}` substitution, `%include FILE` (relative to
 * the including file, as ZConfig resolves it; cookiecutter-zope-instance
 * writes one at the end of zope.conf, where extra databases may be mounted)
 * and comments. From it we take
 * every FileStorage: its `path`, its `blob-dir` (on the filestorage itself,
 * or on a surrounding `<blobstorage>`), and the database it belongs to
 * (`<zodb_db NAME>`, with its `mount-point`), or the zeo storage name.
 */

import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PloneBackupError } from '../errors';

/** Reads an included file (synchronously: configuration files are small). */
export type IncludeReader = (file: string) => string;

export interface ZSection {
  type: string;
  name?: string;
  keys: [string, string][];
  children: ZSection[];
  line: number;
}

/** Parses ZConfig text into a tree, following %include; errors name the file and line. */
export function parseZConfig(text: string, file = 'zope.conf', readInclude: IncludeReader = readConfigFile): ZSection {
  const root: ZSection = { type: '', keys: [], children: [], line: 0 };
  const stack: ZSection[] = [root];
  parseInto(text, file, stack, new Map(), readInclude, [path.resolve(file)]);
  return root;
}

/** Reads an included configuration file: a regular file of sane size only (not /dev/stdin, not a FIFO). */
function readConfigFile(file: string): string {
  const st = statSync(file);
  if (!st.isFile()) throw new Error(`${file} is not a regular file`);
  if (st.size > 4 << 20) throw new Error(`${file} is too large for a configuration file`);
  return readFileSync(file, 'utf8');
}

/** Included files deeper than this are a loop or a mistake. */
const MAX_INCLUDE_DEPTH = 10;

function parseInto(text: string, file: string, stack: ZSection[], defines: Map<string, string>, readInclude: IncludeReader, chain: string[]): void {
  const depth = stack.length;
  const lines = text.split(/\r?\n/);
  const bad = (i: number, why: string): never => {
    throw new PloneBackupError('USAGE', `${file} line ${i + 1} cannot be read: ${why}.`, {
      path: file,
      position: i + 1,
      hint: 'Fix the configuration file or pass the storages with --file/--blob-dir.',
    });
  };
  const include = (target: string, i: number) => {
    if (target === '') bad(i, '%include needs a file');
    let inc: string;
    if (/^file:/i.test(target)) inc = fileURLToPath(target);
    else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) return bad(i, `%include ${target} is not a local file`);
    else inc = path.resolve(path.dirname(file), target);
    if (chain.includes(inc) || chain.length > MAX_INCLUDE_DEPTH) bad(i, `%include ${target} includes itself`);
    let body: string;
    try {
      body = readInclude(inc);
    } catch (e) {
      return bad(i, `%include ${target}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? `${inc} does not exist` : (e as Error).message}`);
    }
    parseInto(body, inc, stack, defines, readInclude, [...chain, inc]);
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
      } else if (m![1].toLowerCase() === 'include') {
        include(subst(m![2].trim(), i), i);
      }
      // %import is ignored: it loads ZConfig components, it defines no storage.
      return;
    }
    if (line.startsWith('</')) {
      const m = /^<\/\s*([^\s>]+)\s*>$/.exec(line);
      if (!m) bad(i, 'a closing tag is malformed');
      // An included file closes only the sections it opened.
      if (stack.length <= depth || stack[stack.length - 1].type !== m![1].toLowerCase()) bad(i, `</${m![1]}> closes nothing open`);
      stack.pop();
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
  if (stack.length !== depth) bad(lines.length - 1, `<${stack[stack.length - 1].type}> is never closed`);
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
