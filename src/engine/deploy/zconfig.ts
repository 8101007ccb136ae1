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

import { closeSync, constants as fsc, fstatSync, openSync, readSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PloneBackupError } from '../base/errors';

/** Reads an included file (synchronously: configuration files are small). */
export type IncludeReader = (file: string) => string;

export interface ZSection {
  type: string;
  name?: string;
  keys: [string, string][];
  children: ZSection[];
  line: number;
}

/** A value after `$NAME` substitution is at most this long (real ones are paths). */
export const MAX_VALUE = 64 << 10;
/**
 * All substituted values of one parse, and all included text, add up to at
 * most this: nested %defines double at every step and one file can include
 * another many times, so without a total a 790-byte zope.conf expanded to 570 MB.
 */
export const MAX_TOTAL = 16 << 20;
/** One configuration file (zope.conf or an include) is at most this long. */
export const MAX_CONFIG_FILE = 4 << 20;

/** %include directives followed in one parse (real configurations have a few). */
export const MAX_INCLUDES = 256;

interface Budget {
  /** Bytes of substituted values and of included files so far. */
  used: number;
  includes: number;
}

/** Parses ZConfig text into a tree, following %include; errors name the file and line. */
export function parseZConfig(text: string, file = 'zope.conf', readInclude: IncludeReader = readConfigFile): ZSection {
  const root: ZSection = { type: '', keys: [], children: [], line: 0 };
  const stack: ZSection[] = [root];
  parseInto(text, file, stack, new Map(), readInclude, [path.resolve(file)], { used: 0, includes: 0 });
  return root;
}

/**
 * Reads an included configuration file: a regular file of sane size only (not
 * /dev/stdin, not a FIFO, not a link to /dev/zero). The open is non-blocking
 * and the type is checked on the open descriptor, so a FIFO put there (even
 * after a check by name) can never block the thread; then at most the file's
 * real size is read.
 */
export function readConfigFile(file: string): string {
  // By name first, for a clear message where opening fails (a socket: ENXIO).
  if (!statSync(file).isFile()) throw new Error(`${file} is not a regular file`);
  const fd = openSync(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    if (st.size > MAX_CONFIG_FILE) throw new Error(`${file} is too large for a configuration file (${st.size} bytes)`);
    const buf = Buffer.alloc(st.size + 1); // one more byte tells a file that grew since
    let n = 0;
    while (n < buf.length) {
      const k = readSync(fd, buf, n, buf.length - n, n);
      if (k === 0) break;
      n += k;
    }
    if (n > st.size) throw new Error(`${file} grew while it was read`);
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

/** Included files deeper than this are a loop or a mistake. */
const MAX_INCLUDE_DEPTH = 10;

function parseInto(text: string, file: string, stack: ZSection[], defines: Map<string, string>, readInclude: IncludeReader, chain: string[], budget: Budget): void {
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
    // Each file may include another many times: without a count, three small
    // files including each other 32 times each are 32,768 reads.
    if (++budget.includes > MAX_INCLUDES) bad(i, `%include ${target}: more than ${MAX_INCLUDES} includes in one configuration`);
    let body: string;
    try {
      body = readInclude(inc);
    } catch (e) {
      return bad(i, `%include ${target}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? `${inc} does not exist` : (e as Error).message}`);
    }
    budget.used += body.length;
    if (budget.used > MAX_TOTAL) bad(i, `%include ${target}: the configuration adds up to more than ${MAX_TOTAL} bytes with its includes`);
    parseInto(body, inc, stack, defines, readInclude, [...chain, inc], budget);
  };
  // Substitutes $NAME / ${NAME} / $$ in one pass, counting the output as it
  // grows: a value is refused as soon as it passes MAX_VALUE, before it is built,
  // and every value counts against the parse's MAX_TOTAL.
  const subst = (v: string, i: number): string => {
    const re = /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\$))/g;
    const parts: string[] = [];
    let len = 0;
    let last = 0;
    const add = (piece: string) => {
      len += piece.length;
      if (len > MAX_VALUE) bad(i, `a value grows past ${MAX_VALUE} characters once its $-names are replaced`);
      parts.push(piece);
    };
    for (let m = re.exec(v); m; m = re.exec(v)) {
      add(v.slice(last, m.index));
      last = re.lastIndex;
      if (m[3]) {
        add('$');
        continue;
      }
      const name = m[1] ?? m[2];
      const val = defines.get(name!.toLowerCase());
      if (val === undefined) bad(i, `$${name} is not defined`);
      add(val!);
    }
    add(v.slice(last));
    budget.used += len;
    if (budget.used > MAX_TOTAL) bad(i, `its values add up to more than ${MAX_TOTAL} characters once their $-names are replaced`);
    return parts.join('');
  };
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (line.startsWith('%')) {
      const m = /^%(\w+)\s*(.*)$/.exec(line);
      if (!m) bad(i, 'unknown directive');
      if (m![1]!.toLowerCase() === 'define') {
        const d = /^(\S+)\s*(.*)$/.exec(m![2]!);
        if (!d) bad(i, '%define needs a name');
        defines.set(d![1]!.toLowerCase(), subst(d![2]!, i));
      } else if (m![1]!.toLowerCase() === 'include') {
        include(subst(m![2]!.trim(), i), i);
      }
      // %import is ignored: it loads ZConfig components, it defines no storage.
      return;
    }
    if (line.startsWith('</')) {
      const m = /^<\/\s*([^\s>]+)\s*>$/.exec(line);
      if (!m) bad(i, 'a closing tag is malformed');
      // An included file closes only the sections it opened.
      if (stack.length <= depth || stack[stack.length - 1]!.type !== m![1]!.toLowerCase()) bad(i, `</${m![1]}> closes nothing open`);
      stack.pop();
      return;
    }
    if (line.startsWith('<')) {
      const m = /^<\s*([^\s>/]+)(?:\s+([^>]*?))?\s*(\/)?>$/.exec(line);
      if (!m) bad(i, 'a section tag is malformed');
      const sec: ZSection = { type: m![1]!.toLowerCase(), name: m![2] ? subst(m![2]!, i) : undefined, keys: [], children: [], line: i + 1 };
      stack[stack.length - 1]!.children.push(sec);
      if (!m![3]) stack.push(sec);
      return;
    }
    // (s: a lone \r or \u2028 inside a line is part of its value, not an end)
    const m = /^(\S+)\s*(.*)$/s.exec(line);
    if (!m) bad(i, 'a line is neither a key nor a section');
    stack[stack.length - 1]!.keys.push([m![1]!.toLowerCase(), subst(m![2]!, i)]);
  });
  if (stack.length !== depth) bad(lines.length - 1, `<${stack[stack.length - 1]!.type}> is never closed`);
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
