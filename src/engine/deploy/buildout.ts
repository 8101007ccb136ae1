/**
 * A zc.buildout configuration read as collective.recipe.backup reads it, so a
 * buildout's backups are found where its `bin/backup` puts them without
 * running buildout or Python.
 *
 * Two halves:
 *
 *   1. buildout's own rules, as far as a configuration file goes
 *      (zc.buildout's configparser.py and buildout.py): `[section]`s,
 *      `key = value` with indented continuation lines (a value starting on
 *      the next line is dedented), comments at the start of a line, `extends`
 *      (relative to the including file, later files override earlier, the
 *      extending file overrides what it extends), `key +=` / `key -=`
 *      (lines added to / removed from the inherited value), `<=` macros,
 *      `${section:option}` substitution (`${:option}` is the current
 *      section) and the [buildout] defaults (`directory` is the folder of
 *      the top file; `bin-directory` is `bin` under it). What it cannot
 *      follow (an extends URL, a conditional section) is a warning, never
 *      a guess.
 *   2. collective.recipe.backup 6's derivation for every part whose recipe
 *      it is (`Recipe.__init__`, `install`, `compute_storage`,
 *      `compute_alternative_restore_source`, `generate_scripts`,
 *      `validate`, `to_bool`, `construct_path`, `get_zope_option`): the var
 *      folder, Data.fs, the blobstorage, the six backup locations, the
 *      script names and every option, with the recipe's own refusals
 *      (its `UserError`s) as CONFIG_BAD.
 *
 * The configuration is hostile input, as everything we read: every file is
 * read with `readFileCapped`, the extends chain is bounded in files, depth
 * and bytes, substituted values are counted as they grow (nested references
 * that double at every level fail at the cap, in time linear in the input),
 * and the parser is one pass over lines with anchored patterns. Sections and
 * options live in Maps, so no name reaches an object's prototype.
 *
 * Nothing is written and no network is used. Unknown or misspelt options of
 * the recipe are warnings naming the closest option it knows.
 */

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PloneBackupError, toPloneBackupError } from '../base/errors';
import { READ_CAPS, readFileCapped } from '../base/io';
import type { BackupDirs } from './deployment';

// ---------------------------------------------------------------------------
// The API

export interface ConfigWarning {
  code:
    | 'UNKNOWN_KEY' // an option the recipe does not read (with the closest one it does)
    | 'DEPRECATED_KEY' // an older name or an option of an older recipe version
    | 'IGNORED_KEY' // an option the recipe overwrites, so its value has no effect
    | 'BAD_BOOLEAN' // neither a true nor a false word: the recipe takes it as false
    | 'BLOB_TIMESTAMPS_OFF' // the recipe's own warning for blob_timestamps = false
    | 'UNREACHABLE_EXTENDS' // an extends URL, which is not followed (no network)
    | 'CONDITIONAL_SECTION' // [name:condition], which is not evaluated
    | 'PART_NOT_INSTALLED' // a collective.recipe.backup section that [buildout] parts does not list
    | 'ZOPE_PART_IGNORED'; // a zope2instance/zeoserver part the recipe does not look at (a pinned recipe)
  message: string;
  part?: string;
  key?: string;
  suggestion?: string;
  file?: string;
  line?: number;
}

/** The six locations, as a deployment's backup folders name them. */
export type RecipeLocations = BackupDirs;

export interface RecipeScripts {
  backup: string;
  snapshot: string;
  zipbackup: string;
  restore: string;
  snapshotrestore: string;
  ziprestore: string;
  altrestore: string;
}

export interface RecipeOptions {
  keep: number;
  keepBlobDays: number;
  full: boolean;
  archiveBlob: boolean;
  compressBlob: boolean;
  incrementalBlobs: boolean;
  blobTimestamps: boolean;
  backupBlobs: boolean;
  onlyBlobs: boolean;
  rsyncHardLinksOnFirstCopy: boolean;
  preCommand: string;
  postCommand: string;
  enableSnapshotrestore: boolean;
  enableZipbackup: boolean;
  debug: boolean;
  useRsync: boolean;
  rsyncOptions: string;
  /** Not an option since recipe 5: its scripts always pass repozo `--quick` (for incremental backups). */
  quick: true;
  /** Not an option since recipe 5: its scripts always pass repozo `--gzip`. */
  gzip: true;
  /** The recipe's `alternative_restore_source` (`1` or `Data`, a repository, optionally a blob backup folder). */
  alternativeRestoreSource?: { datafs: string; blobStorage?: string };
}

export interface RecipePart {
  /** The part (section) name. */
  name: string;
  /** The recipe's buildout folder: the parent of `bin-directory` (not always `${buildout:directory}`). */
  buildoutDir: string;
  /** The top configuration file read. */
  configFile: string;
  /** The section's options after substitution, as written (before the recipe's defaults). */
  raw: Record<string, string>;
  varDir: string;
  datafs: string;
  /** Absolute; undefined where the recipe finds none (only possible with backup_blobs = false). */
  blobStorage?: string;
  /**
   * Absolute. The blob ones are computed as the recipe computes them even
   * when backup_blobs is false (its scripts then leave them unused).
   */
  locations: RecipeLocations;
  /** The recipe's script names for this part (`backup` → backup, snapshotbackup, …; `x` → x, x-snapshot, …). */
  scripts: RecipeScripts;
  /** The scripts `generate_scripts` creates, in its order (zip ones only with enable_zipbackup, …). */
  installedScripts: string[];
  options: RecipeOptions;
  warnings: ConfigWarning[];
}

export interface ReadBuildoutOptions {
  /** The configuration file (default `<dir>/buildout.cfg`), as `bin/buildout -c`. */
  file?: string;
  /** For `$VAR` in paths (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** For `~` in paths (default: env.HOME, else the OS's home). */
  home?: string;
}

/** Caps for one read of a configuration (far above real buildouts). */
export const BUILDOUT_CAPS = {
  /** Files opened for one configuration, repeats (a diamond of extends) included. */
  files: 64,
  /** extends inside extends. */
  depth: 16,
  /** All files read, together. */
  inputBytes: 16 << 20,
  /** One option's value once its references are replaced. */
  value: 256 << 10,
  /** All substituted values of one read, together. */
  substituted: 16 << 20,
  /** References inside references. */
  nesting: 256,
} as const;

/** Every option collective.recipe.backup 6 reads from its section (plus `recipe`). */
export const RECIPE_OPTIONS: readonly string[] = [
  'recipe',
  'alternative_restore_source',
  'alternative_restore_sources',
  'archive_blob',
  'backup_blobs',
  'blob-storage',
  'blob_storage',
  'blob_timestamps',
  'blobbackuplocation',
  'blobsnapshotlocation',
  'blobziplocation',
  'buildout_dir',
  'compress_blob',
  'datafs',
  'debug',
  'enable_snapshotrestore',
  'enable_zipbackup',
  'full',
  'incremental_blobs',
  'keep',
  'keep_blob_days',
  'location',
  'locationprefix',
  'only_blobs',
  'post_command',
  'pre_command',
  'rsync_hard_links_on_first_copy',
  'rsync_options',
  'snapshotlocation',
  'use_rsync',
  'ziplocation',
];

/** Read by zc.recipe.egg's Egg (how the scripts are installed), not by the backup itself. */
const EGG_OPTIONS = [
  'eggs',
  'find-links',
  'index',
  'python',
  'allow-hosts',
  'extra-paths',
  'relative-paths',
  'dependent-scripts',
  'include-site-packages',
  'allowed-eggs-from-site-packages',
];

/** Set by the recipe itself: a value written in the section is overwritten. */
const OVERWRITTEN = [
  'executable',
  'bin-directory',
  'parts-directory',
  'backup_name',
  'zipbackup_name',
  'snapshot_name',
  'restore_name',
  'snapshotrestore_name',
  'ziprestore_name',
  'altrestore_name',
];

/** Options of older versions of the recipe that version 6 no longer reads. */
const OLD_OPTIONS: Record<string, string> = {
  additional_filestorages: 'was dropped in collective.recipe.backup 5: only the main Data.fs (and its blobstorage) is backed up',
  gzip: 'is no longer an option (collective.recipe.backup 5 and later always compress: repozo --gzip)',
  quick: 'is no longer an option (collective.recipe.backup 5 and later always pass repozo --quick)',
  gzip_blob: 'is the old name of archive_blob, which version 6 no longer reads',
  enable_fullbackup: 'is not read by collective.recipe.backup 6 (there is no fullbackup script; set full = true instead)',
};

const BACKUP_RECIPE = 'collective-recipe-backup';
const ZOPE_RECIPES = ['plone.recipe.zeoserver', 'plone.recipe.zope2instance', 'plone.recipe.zope2zeoserver'];
const BUILDOUT_PATHS = ['bin-directory', 'parts-directory', 'eggs-directory', 'develop-eggs-directory', 'installed'];

// ---------------------------------------------------------------------------
// Small helpers that are useful on their own

/**
 * `~` and `$VAR` / `${VAR}` in a path, as Python's os.path.expanduser then
 * os.path.expandvars (the recipe's construct_path): `~` and `~/…` take
 * `home`; `~user` is left as written (no password database here); a name not
 * in `env` is left as written. `${section:option}` never matches: a name
 * with a colon is not an environment variable.
 */
export function expandPath(p: string, env: NodeJS.ProcessEnv, home: string): string {
  let s = p;
  if (s === '~' || s.startsWith('~/')) s = home.replace(/\/+$/, '') + s.slice(1) || '/';
  // os.path.expandvars: `\$(\w+|\{[^}]*\})`, a replaced value is not scanned again.
  return s.replace(/\$(\w+|\{[^}]*\})/g, (m: string, name: string) => {
    const n = name.startsWith('{') ? name.slice(1, -1) : name;
    const v = Object.prototype.hasOwnProperty.call(env, n) ? env[n] : undefined;
    return v === undefined ? m : v;
  });
}

/**
 * The option of `known` nearest to `key` (optimal string alignment distance:
 * insertions, deletions, substitutions, swaps of neighbours; `-` and `_`
 * count as the same), within 1 edit for short names and 2 for longer ones.
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/-/g, '_');
  const k = norm(key);
  if (k.length > 64) return undefined;
  let best: string | undefined;
  let bestD = Infinity;
  for (const cand of known) {
    const c = norm(cand);
    const max = Math.min(c.length, k.length) <= 4 ? 1 : 2;
    if (Math.abs(c.length - k.length) > max) continue;
    const d = osaDistance(k, c);
    if (d <= max && d < bestD) {
      best = cand;
      bestD = d;
    }
  }
  return best;
}

function osaDistance(a: string, b: string): number {
  const w = b.length + 1;
  const d: number[] = new Array<number>((a.length + 1) * w).fill(0);
  const at = (i: number, j: number) => d[i * w + j] ?? 0;
  for (let i = 0; i <= a.length; i++) d[i * w] = i;
  for (let j = 0; j <= b.length; j++) d[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * w + j] = v;
    }
  }
  return at(a.length, b.length);
}

/** The recipe's to_bool: true, yes, on, 1 (any case) are true; anything else is false. */
export function recipeBool(value: string | undefined): boolean {
  return value !== undefined && ['true', 'yes', 'on', '1'].includes(value.toLowerCase());
}

/** True when a part's `recipe` names collective.recipe.backup (a version pin, extras or `:default` included). */
export function isBackupRecipe(recipe: string | undefined): boolean {
  if (!recipe) return false;
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$/s.exec(recipe.split(':')[0] ?? '');
  if (!m) return false;
  const rest = m[2] ?? '';
  if (rest !== '' && !/^[[<>=!~;]/.test(rest)) return false;
  const entry = recipe.includes(':') ? recipe.slice(recipe.indexOf(':') + 1).trim() : 'default';
  return m[1]!.toLowerCase().replace(/[-_.]+/g, '-') === BACKUP_RECIPE && entry === 'default';
}

// ---------------------------------------------------------------------------
// Parsing (zc.buildout's configparser)

interface Entry {
  value: string;
  file: string;
  line: number;
}
type Section = Map<string, Entry>;
type Config = Map<string, Section>;

const bad = (message: string, file: string | undefined, line: number | undefined, hint: string): PloneBackupError =>
  new PloneBackupError('CONFIG_BAD', message, { path: file, position: line, hint });

const where = (file: string, line: number) => `${file} line ${line}`;

const FIX_HINT = 'Fix the buildout configuration (it would fail in buildout too), or describe the site in plone-backup.json.';

// `[name]` or `[name:condition]`, then nothing or a comment.
const SECTION_HEADER = /^\[\s*([^\s#[\]:;{}]+)\s*(?::([^\]]*))?\]\s*(?:[#;].*)?$/s;
const OPTION_START = /^([^\s{}[\]=:]+\s*[-+]?)=(.*)$/s;
const isSpace = (c: string | undefined) => c === undefined || /\s/.test(c);

/** Parses one file's text into sections (options in file order, later ones replacing earlier). */
export function parseBuildoutText(text: string, file: string, warnings: ConfigWarning[] = []): Config {
  const sections: Config = new Map();
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  let cur: Section | undefined;
  let optname: string | undefined;
  let blockmode = false;
  const errors: string[] = [];
  let firstError = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const lineno = i + 1;
    const c0 = line[0];
    if (c0 === '#' || c0 === ';') continue;
    if (isSpace(c0) && cur && optname !== undefined) {
      const piece = blockmode ? line.trimEnd() : line.trim();
      if (!blockmode && piece === '') continue;
      const e = cur.get(optname)!;
      e.value = `${e.value}\n${piece}`;
      continue;
    }
    const h = SECTION_HEADER.exec(line.trimEnd());
    if (h) {
      const name = h[1]!;
      if (h[2] !== undefined) {
        // A throwaway section: its options are read (for syntax) but never used.
        warnings.push({
          code: 'CONDITIONAL_SECTION',
          message: `[${name}:${h[2].trim()}] in ${where(file, lineno)} has a condition, which is not evaluated here: its options are left out.`,
          file,
          line: lineno,
        });
        cur = new Map();
      } else {
        cur = sections.get(name);
        if (!cur) sections.set(name, (cur = new Map()));
      }
      optname = undefined;
      continue;
    }
    if (!cur) {
      if (line.trim() === '') continue;
      throw bad(`${where(file, lineno)} comes before any [section].`, file, lineno, FIX_HINT);
    }
    const o = OPTION_START.exec(line);
    if (o) {
      optname = o[1]!.trimEnd();
      const value = o[2]!.trim();
      cur.set(optname, { value, file, line: lineno });
      blockmode = value === '';
    } else if (optname === undefined && line.trim() === '') {
      continue;
    } else {
      if (errors.length === 0) firstError = lineno;
      if (errors.length < 5) errors.push(`line ${lineno}: ${JSON.stringify(line.length > 80 ? `${line.slice(0, 80)}…` : line)}`);
    }
  }
  if (errors.length)
    throw bad(`${file} cannot be parsed (${errors.join('; ')}).`, file, firstError, 'Every line must be a [section], a key = value, an indented continuation or a comment.');
  for (const sec of sections.values()) {
    for (const e of sec.values()) if (isSpace(e.value[0]) && e.value !== '') e.value = stripLeadingBlankLines(dedent(e.value.trimEnd()));
  }
  return sections;
}

/** Python's textwrap.dedent. */
function dedent(text: string): string {
  const lines = text.split('\n').map((l) => (/^[ \t]+$/.test(l) ? '' : l));
  let margin: string | undefined;
  for (const l of lines) {
    if (l === '') continue;
    const indent = /^[ \t]*/.exec(l)![0];
    if (margin === undefined) margin = indent;
    else {
      let k = 0;
      while (k < margin.length && k < indent.length && margin[k] === indent[k]) k++;
      margin = margin.slice(0, k);
    }
  }
  const m = margin ?? '';
  return lines.map((l) => (l.startsWith(m) ? l.slice(m.length) : l)).join('\n');
}

function stripLeadingBlankLines(s: string): string {
  // leading_blank_lines = ^(\s*\n)+ : everything up to the last newline before the first non-space.
  const m = /^\s*\n/.exec(s);
  return m ? s.slice(m[0].length) : s;
}

// ---------------------------------------------------------------------------
// extends, +=, -= (buildout's _open, _update, _update_section)

/** Merges section `over` onto `base` in place: buildout's _update_section. */
function updateSection(base: Section, over: Section): void {
  const plain = new Map<string, Entry>();
  const adds: [string, Entry][] = [];
  const removes: [string, Entry][] = [];
  for (const [k, e] of over) {
    if (k.endsWith('+')) adds.push([k.replace(/[ +]+$/, ''), e]);
    else if (k.endsWith('-')) removes.push([k.replace(/[ -]+$/, ''), e]);
    else plain.set(k, e);
  }
  for (const [key, e] of adds) {
    const prev = plain.get(key) ?? base.get(key);
    plain.set(key, { ...e, value: `${prev?.value ?? ''}\n${e.value}` });
  }
  for (const [key, e] of removes) {
    const prev = plain.get(key) ?? base.get(key);
    const gone = new Set(e.value.split('\n'));
    plain.set(key, {
      ...e,
      value: (prev?.value ?? '')
        .split('\n')
        .filter((l) => !gone.has(l))
        .join('\n'),
    });
  }
  for (const [k, e] of plain) base.set(k, e);
}

/** buildout's _update: `over` onto `base`, in place. */
function updateConfig(base: Config, over: Config): Config {
  for (const [name, sec] of over) {
    let b = base.get(name);
    if (!b) base.set(name, (b = new Map()));
    updateSection(b, sec);
  }
  return base;
}

interface LoadState {
  files: number;
  bytes: number;
  warnings: ConfigWarning[];
}

const isUrl = (s: string) => /^[a-zA-Z0-9+.-]+:\/\//.test(s);

async function readConfigFile(file: string, st: LoadState, from?: { file: string; line: number; ref: string }): Promise<string> {
  if (++st.files > BUILDOUT_CAPS.files) {
    throw new PloneBackupError(
      'TOO_LARGE',
      `The buildout configuration opens more than ${BUILDOUT_CAPS.files} files through extends (at ${from ? where(from.file, from.line) : file}).`,
      {
        path: from?.file ?? file,
        position: from?.line,
        hint: 'Simplify the extends chain, or describe the site in plone-backup.json.',
      },
    );
  }
  // A NUL cannot be in a file name: the name is garbage (an OS call would throw a TypeError).
  if (file.includes('\0')) {
    throw bad(
      `extends ${JSON.stringify(from?.ref ?? file)}${from ? ` in ${where(from.file, from.line)}` : ''} is not a file name (it holds a NUL byte).`,
      from?.file ?? file,
      from?.line,
      'Fix the extends line.',
    );
  }
  let buf: Buffer;
  try {
    buf = await readFileCapped(file, READ_CAPS.config, { what: 'the buildout configuration' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      if (!from) throw e; // the top file: the caller tells "no buildout" apart
      throw bad(`extends ${from.ref} in ${where(from.file, from.line)}: ${file} does not exist.`, from.file, from.line, 'Fix the extends line, or create the file it names.');
    }
    throw toPloneBackupError(e, file);
  }
  st.bytes += buf.length;
  if (st.bytes > BUILDOUT_CAPS.inputBytes) {
    throw new PloneBackupError('TOO_LARGE', `The buildout configuration and the files it extends add up to more than ${BUILDOUT_CAPS.inputBytes} bytes (at ${file}).`, {
      path: file,
      hint: 'Check that extends names the right files.',
    });
  }
  return buf.toString('utf8');
}

/** Reads `file` and, depth first, what it extends; returns the merged sections. */
async function openChain(file: string, st: LoadState, chain: string[], from?: { file: string; line: number; ref: string }): Promise<Config> {
  if (chain.includes(file)) {
    throw bad(`The buildout configuration extends itself: ${[...chain, file].join(' → ')}.`, from?.file ?? file, from?.line, 'Remove the extends line that closes the circle.');
  }
  if (chain.length >= BUILDOUT_CAPS.depth) {
    throw new PloneBackupError('TOO_LARGE', `extends are nested more than ${BUILDOUT_CAPS.depth} deep: ${[...chain, file].join(' → ')}.`, {
      path: from?.file ?? file,
      position: from?.line,
      hint: 'Simplify the extends chain.',
    });
  }
  const text = await readConfigFile(file, st, from);
  const result = parseBuildoutText(text, file, st.warnings);
  const bo = result.get('buildout');
  const ext = bo?.get('extends');
  bo?.delete('extends');
  const extBy = bo?.get('extended-by');
  if (extBy)
    throw bad(`The no longer supported "extended-by" option is set in ${where(extBy.file, extBy.line)}.`, extBy.file, extBy.line, 'Remove it; use extends in the other file.');
  if (!ext) return result;
  let merged: Config | undefined;
  const base = path.dirname(file);
  for (const ref of ext.value.split(/\s+/).filter(Boolean)) {
    let target: string;
    if (/^file:\/\//i.test(ref)) target = fileURLToPath(ref);
    else if (isUrl(ref)) {
      st.warnings.push({
        code: 'UNREACHABLE_EXTENDS',
        message: `extends ${ref} in ${where(ext.file, ext.line)} is not followed (no network): what it sets is missing here.`,
        file: ext.file,
        line: ext.line,
      });
      continue;
    } else target = path.resolve(base, ref);
    const sub = await openChain(target, st, [...chain, file], { file: ext.file, line: ext.line, ref });
    merged = merged ? updateConfig(merged, sub) : sub;
  }
  return merged ? updateConfig(merged, result) : result;
}

// ---------------------------------------------------------------------------
// Substitution (buildout's Options._sub, lazily per section as buildout does)

const VALID_REF = /^\$\{[-a-zA-Z0-9 ._]*:[-a-zA-Z0-9 ._]+\}$/;
const SIMPLE = /^[-a-zA-Z0-9 ._]+$/;

class Resolver {
  private readonly cooked = new Map<string, Map<string, string>>();
  private readonly expanded = new Map<string, Section>();
  private readonly doing: string[] = [];
  private used = 0;

  constructor(
    private readonly config: Config,
    private readonly topDir: string,
  ) {}

  has(section: string): boolean {
    return this.config.has(section);
  }

  /** Every option of a section, substituted (buildout substitutes a section whole when it is first used). */
  section(name: string, from?: Entry): Map<string, string> {
    const raw = this.rawSection(name, from);
    const out = new Map<string, string>();
    for (const k of raw.keys()) out.set(k, this.get(name, k)!);
    return out;
  }

  entry(section: string, option: string): Entry | undefined {
    return this.rawSection(section).get(option);
  }

  /** One option, substituted; undefined when the section has no such option. */
  get(section: string, option: string, from?: Entry): string | undefined {
    const done = this.cooked.get(section)?.get(option);
    if (done !== undefined) return done;
    const e = this.rawSection(section, from).get(option);
    if (!e) return undefined;
    const key = `${section}:${option}`;
    if (this.doing.includes(key)) {
      throw bad(
        `Circular reference in substitutions: ${[...this.doing, key].join(' → ')} (${where(e.file, e.line)}).`,
        e.file,
        e.line,
        'Break the circle: one of these options must not refer back.',
      );
    }
    if (this.doing.length >= BUILDOUT_CAPS.nesting) {
      throw new PloneBackupError('TOO_LARGE', `References inside references go more than ${BUILDOUT_CAPS.nesting} deep at ${key} (${where(e.file, e.line)}).`, {
        path: e.file,
        position: e.line,
        hint: 'Simplify the references.',
      });
    }
    this.doing.push(key);
    let v: string;
    try {
      v = this.substitute(section, e);
    } finally {
      this.doing.pop();
    }
    if (section === 'buildout' && BUILDOUT_PATHS.includes(option)) v = path.resolve(this.get('buildout', 'directory') ?? this.topDir, v);
    if (section === 'buildout' && option === 'directory') v = path.resolve(this.topDir, v);
    let m = this.cooked.get(section);
    if (!m) this.cooked.set(section, (m = new Map()));
    m.set(option, v);
    return v;
  }

  private substitute(section: string, e: Entry): string {
    const v = e.value;
    if (!v.includes('${')) return v;
    const out: string[] = [];
    let len = 0;
    const add = (s: string) => {
      len += s.length;
      if (len > BUILDOUT_CAPS.value) {
        throw new PloneBackupError(
          'TOO_LARGE',
          `${section}:${this.doing[this.doing.length - 1]?.split(':')[1] ?? ''} grows past ${BUILDOUT_CAPS.value} characters once its references are replaced (${where(e.file, e.line)}).`,
          {
            path: e.file,
            position: e.line,
            hint: 'Check the references: nested ones that repeat each other grow without bound.',
          },
        );
      }
      out.push(s);
    };
    // `$$` splits first, as buildout does; `$${` is a literal `${`.
    const pieces = v.split('$$');
    pieces.forEach((piece, i) => {
      if (i > 0) add(piece.startsWith('{') ? '$' : '$$');
      const parts = piece.split(/(\$\{[^}]*\})/);
      parts.forEach((p, j) => (j % 2 === 0 ? add(p) : add(this.reference(section, p, e))));
    });
    this.used += len;
    if (this.used > BUILDOUT_CAPS.substituted) {
      throw new PloneBackupError(
        'TOO_LARGE',
        `The buildout's values add up to more than ${BUILDOUT_CAPS.substituted} characters once their references are replaced (at ${where(e.file, e.line)}).`,
        {
          path: e.file,
          position: e.line,
          hint: 'Check the references: nested ones that repeat each other grow without bound.',
        },
      );
    }
    return out.join('');
  }

  private reference(section: string, ref: string, e: Entry): string {
    const s = ref.slice(2, -1).split(':');
    const at = where(e.file, e.line);
    if (!VALID_REF.test(ref)) {
      const why =
        s.length < 2
          ? "doesn't contain a colon (an environment variable is written $NAME, or $${NAME})"
          : s.length > 2
            ? 'has too many colons'
            : !SIMPLE.test(s[0]!) && s[0] !== ''
              ? 'has invalid characters in its section name'
              : 'has invalid characters in its option name';
      throw bad(`The substitution ${ref} in ${at} ${why}.`, e.file, e.line, FIX_HINT);
    }
    const sec = s[0] || section;
    const opt = s[1]!;
    if (!this.config.has(sec)) throw bad(`${ref} in ${at} refers to a section [${sec}] that does not exist.`, e.file, e.line, FIX_HINT);
    const v = this.get(sec, opt, e);
    if (v !== undefined) return v;
    if (opt === '_buildout_section_name_') return sec;
    throw bad(`${ref} in ${at} refers to ${sec}:${opt}, which is not set.`, e.file, e.line, FIX_HINT);
  }

  /** A section's options with its `<=` macros applied (buildout's _do_extend_raw). */
  private rawSection(name: string, from?: Entry, doing: string[] = []): Section {
    const done = this.expanded.get(name);
    if (done) return done;
    const data = this.config.get(name);
    if (!data) throw bad(`There is no section [${name}]${from ? ` (wanted by ${where(from.file, from.line)})` : ''}.`, from?.file, from?.line, FIX_HINT);
    const macro = data.get('<');
    if (name === 'buildout' || !macro) {
      this.expanded.set(name, data);
      return data;
    }
    if (doing.includes(name))
      throw bad(`Infinite extending loop in macros: ${[...doing, name].join(' → ')}.`, macro.file, macro.line, 'Remove the <= line that closes the circle.');
    const result: Section = new Map();
    for (const iname of macro.value
      .split('\n')
      .map((s) => s.trim())
      .filter(Boolean)) {
      if (!this.config.has(iname)) throw bad(`<= ${iname} in ${where(macro.file, macro.line)}: there is no section [${iname}].`, macro.file, macro.line, FIX_HINT);
      for (const [k, e] of this.rawSection(iname, macro, [...doing, name])) result.set(k, e);
    }
    updateSection(result, data);
    result.delete('<');
    this.expanded.set(name, result);
    return result;
  }
}

// ---------------------------------------------------------------------------
// The recipe's derivation

/**
 * Reads the buildout configuration in `dir` and derives, for every part of
 * `[buildout] parts` whose recipe is collective.recipe.backup, what the
 * recipe derives. Undefined when there is no configuration file; CONFIG_BAD
 * (or TOO_LARGE) where buildout or the recipe would refuse it.
 */
export async function readBuildout(dir: string, opts: ReadBuildoutOptions = {}): Promise<{ parts: RecipePart[]; warnings: ConfigWarning[] } | undefined> {
  const configFile = path.resolve(dir, opts.file ?? 'buildout.cfg');
  if (
    opts.file !== undefined &&
    !(await fsp.stat(configFile).then(
      () => true,
      () => false,
    ))
  ) {
    throw new PloneBackupError('NOT_FOUND', `The buildout configuration ${configFile} does not exist.`, { path: configFile, hint: 'Check the file name.' });
  }
  const env = opts.env ?? process.env;
  const home = opts.home ?? env.HOME ?? os.homedir();
  const st: LoadState = { files: 0, bytes: 0, warnings: [] };
  let loaded: Config;
  try {
    loaded = await openChain(configFile, st, []);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const topDir = path.dirname(configFile);
  const defaults: Config = new Map([
    [
      'buildout',
      new Map(
        Object.entries({
          directory: topDir,
          'bin-directory': 'bin',
          'parts-directory': 'parts',
          'eggs-directory': 'eggs',
          'develop-eggs-directory': 'develop-eggs',
          installed: '.installed.cfg',
          python: 'buildout',
          parts: '',
        }).map(([k, value]) => [k, { value, file: '(buildout default)', line: 0 }]),
      ),
    ],
  ]);
  const config = updateConfig(defaults, loaded);
  const r = new Resolver(config, topDir);
  // buildout substitutes [buildout] and every part's section when it loads the recipes.
  r.section('buildout');
  const partsEntry = r.entry('buildout', 'parts');
  const partNames = [...new Set(r.get('buildout', 'parts')!.split(/\s+/).filter(Boolean))];
  for (const p of partNames) r.section(p, partsEntry);
  const ctx: DeriveContext = { r, partNames, env, home, configFile, warnings: st.warnings };
  const parts = partNames.filter((p) => isBackupRecipe(r.get(p, 'recipe'))).map((p) => derivePart(p, ctx));
  for (const [name, sec] of config) {
    const rec = sec.get('recipe');
    if (!partNames.includes(name) && rec && isBackupRecipe(rec.value)) {
      st.warnings.push({
        code: 'PART_NOT_INSTALLED',
        message: `[${name}] (${where(rec.file, rec.line)}) uses collective.recipe.backup but is not in [buildout] parts, so buildout does not install it: it is left out.`,
        part: name,
        file: rec.file,
        line: rec.line,
        suggestion: `parts += ${name}`,
      });
    }
  }
  return { parts, warnings: st.warnings };
}

interface DeriveContext {
  r: Resolver;
  partNames: string[];
  env: NodeJS.ProcessEnv;
  home: string;
  configFile: string;
  warnings: ConfigWarning[];
}

/** get_zope_option: the first non-empty `option` of a zeoserver/zope2instance part, in parts order. */
function zopeOption(ctx: DeriveContext, option: string): string | undefined {
  for (const p of ctx.partNames) {
    const recipe = ctx.r.get(p, 'recipe') ?? '';
    if (!ZOPE_RECIPES.includes(recipe.toLowerCase())) continue;
    const v = ctx.r.get(p, option);
    if (v) return v;
  }
  return undefined;
}

function zopePartWarnings(ctx: DeriveContext, part: string): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  for (const p of ctx.partNames) {
    const recipe = ctx.r.get(p, 'recipe') ?? '';
    const name = recipe.split(/[\s[<>=!~:;]/)[0]!.toLowerCase();
    if (ZOPE_RECIPES.includes(name) && !ZOPE_RECIPES.includes(recipe.toLowerCase())) {
      const e = ctx.r.entry(p, 'recipe')!;
      out.push({
        code: 'ZOPE_PART_IGNORED',
        message: `[${p}] uses "${recipe}": collective.recipe.backup looks for its var, file-storage and blob-storage only when the recipe is written exactly "${name}", so [${part}] does not use them.`,
        part,
        file: e.file,
        line: e.line,
        suggestion: `Set the paths in [${part}] (datafs, blob_storage, locationprefix), or write recipe = ${name}.`,
      });
    }
  }
  return out;
}

interface PartReader {
  name: string;
  raw: Map<string, string>;
  ctx: DeriveContext;
  warnings: ConfigWarning[];
  buildoutDir: string;
  get(k: string): string | undefined;
  entry(k: string): Entry | undefined;
  bool(k: string, dflt: boolean): boolean;
  fail(message: string, key: string | undefined, hint: string): never;
  path(base: string, p: string): string;
}

function partReader(name: string, ctx: DeriveContext, buildoutDir: string): PartReader {
  const raw = ctx.r.section(name);
  const warnings: ConfigWarning[] = [];
  const pr: PartReader = {
    name,
    raw,
    ctx,
    warnings,
    buildoutDir,
    get: (k) => raw.get(k),
    entry: (k) => ctx.r.entry(name, k),
    bool(k, dflt) {
      const v = raw.get(k);
      if (v === undefined) return dflt;
      const t = recipeBool(v);
      if (!t && !['false', 'no', 'off', '0'].includes(v.toLowerCase())) {
        const e = pr.entry(k);
        warnings.push({
          code: 'BAD_BOOLEAN',
          message: `${k} = ${JSON.stringify(v)} in [${name}] is neither true nor false: collective.recipe.backup takes it as false.`,
          part: name,
          key: k,
          file: e?.file,
          line: e?.line,
          suggestion: 'true or false',
        });
      }
      return t;
    },
    fail(message, key, hint) {
      const e = key ? pr.entry(key) : undefined;
      throw bad(`[${name}]${e ? ` (${where(e.file, e.line)})` : ''}: ${message}`, e?.file ?? ctx.configFile, e?.line, hint);
    },
    // construct_path: ~ and $VAR, joined to a base, normalized.
    path: (base, p) => path.resolve(base, expandPath(p, ctx.env, ctx.home)),
  };
  return pr;
}

function keyWarnings(pr: PartReader): void {
  for (const k of pr.raw.keys()) {
    const e = pr.entry(k);
    const at = { part: pr.name, key: k, file: e?.file, line: e?.line };
    if (k === 'alternative_restore_sources') {
      const used = !pr.get('alternative_restore_source');
      pr.warnings.push({
        code: 'DEPRECATED_KEY',
        message: `alternative_restore_sources in [${pr.name}] is the old name of alternative_restore_source${used ? '' : ', which is also set, so this one is ignored'}; collective.recipe.backup 7 will no longer read it.`,
        suggestion: 'alternative_restore_source',
        ...at,
      });
    } else if (RECIPE_OPTIONS.includes(k) || EGG_OPTIONS.includes(k)) {
      continue;
    } else if (OVERWRITTEN.includes(k)) {
      pr.warnings.push({ code: 'IGNORED_KEY', message: `${k} in [${pr.name}] has no effect: collective.recipe.backup sets it itself.`, ...at });
    } else if (Object.prototype.hasOwnProperty.call(OLD_OPTIONS, k)) {
      pr.warnings.push({ code: 'DEPRECATED_KEY', message: `${k} in [${pr.name}] ${OLD_OPTIONS[k]}.`, suggestion: k === 'gzip_blob' ? 'archive_blob' : undefined, ...at });
    } else {
      const s = closestKey(k, RECIPE_OPTIONS);
      pr.warnings.push({
        code: 'UNKNOWN_KEY',
        message: `${k} in [${pr.name}] is not an option of collective.recipe.backup, so it is ignored${s ? `; did you mean ${s}?` : '.'}`,
        suggestion: s,
        ...at,
      });
    }
  }
}

/** The recipe writes keep and keep_blob_days into its scripts as Python literals, then int() them. */
function count(pr: PartReader, key: string, dflt: number): number {
  const v = pr.get(key);
  if (v === undefined) return dflt;
  if (!/^(?:0+|[1-9][0-9]*)$/.test(v) || v.length > 9) {
    pr.fail(`${key} = ${JSON.stringify(v)} is not a whole number of 0 or more; the recipe's scripts would fail on it.`, key, `Write ${key} as a number, like ${key} = ${dflt}.`);
  }
  return Number(v);
}

function scriptNames(name: string): RecipeScripts & { blob: string; blobSnapshot: string; blobZip: string } {
  if (name === 'backup') {
    return {
      backup: 'backup',
      zipbackup: 'zipbackup',
      snapshot: 'snapshotbackup',
      restore: 'restore',
      snapshotrestore: 'snapshotrestore',
      altrestore: 'altrestore',
      ziprestore: 'ziprestore',
      blob: 'blobstoragebackup',
      blobSnapshot: 'blobstoragesnapshot',
      blobZip: 'blobstoragezip',
    };
  }
  return {
    backup: name,
    zipbackup: `${name}-zip`,
    snapshot: `${name}-snapshot`,
    restore: `${name}-restore`,
    snapshotrestore: `${name}-snapshotrestore`,
    altrestore: `${name}-altrestore`,
    ziprestore: `${name}-ziprestore`,
    blob: `${name}-blobstorage`,
    blobSnapshot: `${name}-blobstoragesnapshot`,
    blobZip: `${name}-blobstoragezip`,
  };
}

interface Flags {
  full: boolean;
  debug: boolean;
  onlyBlobs: boolean;
  backupBlobs: boolean;
  useRsync: boolean;
  archiveBlob: boolean;
  enableSnapshotrestore: boolean;
  enableZipbackup: boolean;
  compressBlob: boolean;
  blobTimestamps: boolean;
  incrementalBlobs: boolean;
  rsyncHardLinksOnFirstCopy: boolean;
}

/** The recipe's defaults and its validate(): the combinations it refuses. */
function flags(pr: PartReader): Flags {
  const f: Flags = {
    full: pr.bool('full', false),
    debug: pr.bool('debug', false),
    onlyBlobs: pr.bool('only_blobs', false),
    backupBlobs: pr.bool('backup_blobs', true),
    useRsync: pr.bool('use_rsync', true),
    archiveBlob: pr.bool('archive_blob', false),
    enableSnapshotrestore: pr.bool('enable_snapshotrestore', true),
    enableZipbackup: pr.bool('enable_zipbackup', false),
    compressBlob: pr.bool('compress_blob', false),
    blobTimestamps: pr.bool('blob_timestamps', true),
    incrementalBlobs: pr.bool('incremental_blobs', false),
    rsyncHardLinksOnFirstCopy: pr.bool('rsync_hard_links_on_first_copy', false),
  };
  if (!f.backupBlobs && f.onlyBlobs) pr.fail('Cannot have backup_blobs false and only_blobs true.', 'only_blobs', 'Set backup_blobs = true, or only_blobs = false.');
  if (!f.backupBlobs && f.enableZipbackup)
    pr.fail(
      'Cannot have backup_blobs false and enable_zipbackup true: zipbackup is useless without blobs.',
      'enable_zipbackup',
      'Set backup_blobs = true, or enable_zipbackup = false.',
    );
  if (!f.blobTimestamps && f.incrementalBlobs)
    pr.fail(
      'Cannot have blob_timestamps false and incremental_blobs true.',
      'blob_timestamps',
      'Remove blob_timestamps = false (incremental blob backups need time-stamped names).',
    );
  // install(): incremental_blobs forces blob_timestamps (a no-op after the check above, kept as the recipe has it).
  if (f.incrementalBlobs) f.blobTimestamps = true;
  if (!f.blobTimestamps) {
    const e = pr.entry('blob_timestamps');
    pr.warnings.push({
      code: 'BLOB_TIMESTAMPS_OFF',
      message: `blob_timestamps is false in [${pr.name}]: collective.recipe.backup warns that support for backups without time stamps may be dropped (its issue 65).`,
      part: pr.name,
      key: 'blob_timestamps',
      file: e?.file,
      line: e?.line,
    });
  }
  return f;
}

/** Recipe.__init__'s blob-storage / blob_storage, then install()'s fallbacks. */
function blobStorageOf(pr: PartReader, varDir: string, backupBlobs: boolean): string | undefined {
  const b1 = pr.get('blob-storage') ?? '';
  const b2 = pr.get('blob_storage');
  if (b1 && b2 && b1 !== b2) pr.fail('Both blob_storage and blob-storage have been set. Please pick one.', 'blob-storage', 'Keep one of blob_storage and blob-storage.');
  let blob = b2 ?? b1;
  if (!blob) {
    blob = zopeOption(pr.ctx, 'blob-storage') ?? '';
    if (!blob && zopeOption(pr.ctx, 'recipe')) blob = path.join(varDir, 'blobstorage');
  }
  if (backupBlobs && !blob) {
    pr.fail(
      `No blob_storage found. You must specify one. To ignore this, set 'backup_blobs = false' in the [${pr.name}] section.`,
      undefined,
      `Set blob_storage in [${pr.name}] (or a plone.recipe.zope2instance part's blob-storage), or backup_blobs = false.`,
    );
  }
  // The recipe passes the value to its scripts as written (rstrip(os.sep)); a
  // relative one is taken from the buildout folder, where the scripts run.
  return blob ? pr.path(pr.buildoutDir, blob.replace(/\/+$/, '') || '/') : undefined;
}

function alternativeSource(pr: PartReader, hasBlobs: boolean): { value: string; source?: { datafs: string; blobStorage?: string } } {
  const value = pr.get('alternative_restore_source') || pr.get('alternative_restore_sources') || '';
  const key = pr.get('alternative_restore_source') ? 'alternative_restore_source' : 'alternative_restore_sources';
  let source: { datafs: string; blobStorage?: string } | undefined;
  const fix = "Write one line: 'Data', the filestorage backup folder and (with blobs) the blob backup folder.";
  for (const line0 of value.split('\n')) {
    const a = line0.trim();
    if (!a || a.startsWith('#')) continue;
    if (source) pr.fail('Only one alternative_restore_source line is supported.', key, fix);
    const m = /^\s*(\S+)\s+(\S+)\s*(\S*)\s*$/.exec(a);
    if (!m) {
      pr.fail(
        `alternative_restore_source line ${JSON.stringify(a)} has a wrong format. Should be: 'storage-name filestorage-backup-path', optionally followed by a blobstorage-backup-path.`,
        key,
        fix,
      );
    }
    const storage = m[1]!;
    if (storage !== 'Data' && storage !== '1') pr.fail(`alternative_restore_source key ${JSON.stringify(storage)} unknown. Expected 1 or Data.`, key, fix);
    source = { datafs: pr.path(pr.buildoutDir, m[2]!) };
    const blobdir = m[3]!;
    if (hasBlobs) {
      if (!blobdir) pr.fail(`alternative_restore_source key ${JSON.stringify(storage)} is missing a blobdir.`, key, fix);
      source.blobStorage = pr.path(pr.buildoutDir, blobdir);
    } else if (blobdir) {
      pr.fail(`alternative_restore_source key ${JSON.stringify(storage)} specifies blobdir ${JSON.stringify(blobdir)} but the original storage has no blobstorage.`, key, fix);
    }
  }
  return { value, source };
}

const LOCATION_KEYS: [keyof RecipeLocations, string][] = [
  ['backups', 'location'],
  ['snapshots', 'snapshotlocation'],
  ['zips', 'ziplocation'],
  ['blobBackups', 'blobbackuplocation'],
  ['blobSnapshots', 'blobsnapshotlocation'],
  ['blobZips', 'blobziplocation'],
];

function derivePart(name: string, ctx: DeriveContext): RecipePart {
  const binDir = ctx.r.get('buildout', 'bin-directory')!;
  const directory = ctx.r.get('buildout', 'directory')!;
  // install(): "we use the parent of the bin-directory".
  const buildoutDir = path.resolve(binDir, '..');
  const pr = partReader(name, ctx, buildoutDir);
  keyWarnings(pr);
  pr.warnings.push(...zopePartWarnings(ctx, name));
  const f = flags(pr);
  const names = scriptNames(name);
  // The var folder of a zeoserver / zope2instance part (os.path.abspath: from
  // buildout's folder, where buildout runs), else <buildout>/var.
  const zvar = zopeOption(ctx, 'zeo-var') ?? zopeOption(ctx, 'var');
  const varDir = zvar ? pr.path(directory, zvar) : path.resolve(buildoutDir, 'var');
  const prefixRaw = pr.get('locationprefix');
  const prefix = prefixRaw !== undefined ? pr.path(buildoutDir, prefixRaw) : varDir;
  const dflt: Record<string, string> = {
    location: names.backup,
    snapshotlocation: names.snapshot,
    ziplocation: names.zipbackup,
    blobbackuplocation: names.blob,
    blobsnapshotlocation: names.blobSnapshot,
    blobziplocation: names.blobZip,
  };
  const locations = {} as RecipeLocations;
  for (const [field, key] of LOCATION_KEYS) locations[field] = pr.path(prefix, pr.get(key) || `${dflt[key]}s`);
  checkDistinct(pr, locations);
  const datafsRaw = pr.get('datafs') ?? (zopeOption(ctx, 'file-storage') || path.join(varDir, 'filestorage', 'Data.fs'));
  if (!datafsRaw.trim()) pr.fail('datafs is empty.', 'datafs', 'Set datafs to the Data.fs file, or remove the line.');
  const datafs = pr.path(buildoutDir, datafsRaw);
  const blobStorage = blobStorageOf(pr, varDir, f.backupBlobs);
  const alt = alternativeSource(pr, blobStorage !== undefined);
  const installedScripts = [names.backup];
  if (f.enableZipbackup) installedScripts.push(names.zipbackup);
  installedScripts.push(names.snapshot, names.restore);
  if (f.enableZipbackup) installedScripts.push(names.ziprestore);
  if (f.enableSnapshotrestore) installedScripts.push(names.snapshotrestore);
  if (alt.value) installedScripts.push(names.altrestore);
  const { blob: _b, blobSnapshot: _s, blobZip: _z, ...scripts } = names;
  const options: RecipeOptions = {
    keep: count(pr, 'keep', 2),
    keepBlobDays: count(pr, 'keep_blob_days', 14),
    full: f.full,
    archiveBlob: f.archiveBlob,
    compressBlob: f.compressBlob,
    incrementalBlobs: f.incrementalBlobs,
    blobTimestamps: f.blobTimestamps,
    backupBlobs: f.backupBlobs,
    onlyBlobs: f.onlyBlobs,
    rsyncHardLinksOnFirstCopy: f.rsyncHardLinksOnFirstCopy,
    preCommand: pr.get('pre_command') ?? '',
    postCommand: pr.get('post_command') ?? '',
    enableSnapshotrestore: f.enableSnapshotrestore,
    enableZipbackup: f.enableZipbackup,
    debug: f.debug,
    useRsync: f.useRsync,
    rsyncOptions: pr.get('rsync_options') ?? '',
    quick: true,
    gzip: true,
  };
  if (alt.source) options.alternativeRestoreSource = alt.source;
  return {
    name,
    buildoutDir,
    configFile: ctx.configFile,
    raw: Object.fromEntries(pr.raw),
    varDir,
    datafs,
    blobStorage,
    locations,
    scripts,
    installedScripts,
    options,
    warnings: pr.warnings,
  };
}

/** validate(): "These must be distinct locations" (compared as absolute, normalized paths). */
function checkDistinct(pr: PartReader, locations: RecipeLocations): void {
  const seen = new Map<string, string>();
  for (const [field, key] of LOCATION_KEYS) {
    const p = locations[field];
    const other = seen.get(p);
    if (other)
      pr.fail(
        `${other} and ${key} are the same folder, ${p}; these must be distinct locations.`,
        pr.get(key) !== undefined ? key : other,
        `Give ${other} and ${key} different folders.`,
      );
    seen.set(p, key);
  }
}
