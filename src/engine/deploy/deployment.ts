/**
 * Finding a deployment: which Data.fs files and blob dirs a Plone site has,
 * and where their backups go. Sources, in order:
 *
 *   1. plone-backup.json in the folder (explicit settings);
 *   2. zope.conf / zeo.conf (pip-installed Plone 6, or a buildout's parts/),
 *      every <filestorage> with its blob-dir, several <zodb_db> mounts;
 *   3. a buildout's var/filestorage/Data.fs and var/blobstorage (plus any
 *      other var/filestorage/NAME.fs with var/blobstorage_NAME).
 *
 * Backup folders default to collective.recipe.backup's names, with the
 * recipe's `_NAME` suffix for every storage but the main one.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { READ_CAPS, readFileCapped } from '../base/io';
import { parseZConfig, storagesOf } from './zconfig';

export interface BackupDirs {
  backups: string;
  blobBackups: string;
  snapshots: string;
  blobSnapshots: string;
  zips: string;
  blobZips: string;
}

export interface StorageConfig {
  /** "main" for the main database, else the recipe's name for it ("catalog"). */
  name: string;
  file: string;
  blobDir?: string;
  dirs: BackupDirs;
}

export interface DeploymentSettings {
  /** Full filestorage backups kept (with their incrementals and blob generations). */
  keep: number;
  keepSnapshots: number;
  keepZips: number;
  gzip: boolean;
  quick: boolean;
}

export interface Deployment {
  root: string;
  varDir: string;
  source: 'config' | 'zconfig' | 'buildout' | 'options';
  configFile?: string;
  storages: StorageConfig[];
  settings: DeploymentSettings;
}

export const DEFAULT_SETTINGS: DeploymentSettings = { keep: 2, keepSnapshots: 2, keepZips: 1, gzip: true, quick: true };

export const CONFIG_FILE = 'plone-backup.json';

export interface DiscoverOverrides {
  /** A config file to read instead of <dir>/plone-backup.json. */
  config?: string;
  /** A single storage given on the command line. */
  file?: string;
  blobDir?: string;
  /** The folder backup folders go under (default: the var folder). */
  backupRoot?: string;
  keep?: number;
  gzip?: boolean;
  quick?: boolean;
}

/** collective.recipe.backup's folder names for a storage. */
export function defaultDirs(base: string, name: string): BackupDirs {
  const sfx = name === 'main' ? '' : `_${name}`;
  return {
    backups: path.join(base, `backups${sfx}`),
    blobBackups: path.join(base, `blobstoragebackups${sfx}`),
    snapshots: path.join(base, `snapshotbackups${sfx}`),
    blobSnapshots: path.join(base, `blobstoragesnapshots${sfx}`),
    zips: path.join(base, `zipbackups${sfx}`),
    blobZips: path.join(base, `blobstoragezips${sfx}`),
  };
}

async function isFile(p: string): Promise<boolean> {
  return fsp.stat(p).then((s) => s.isFile(), () => false);
}
async function isDir(p: string): Promise<boolean> {
  return fsp.stat(p).then((s) => s.isDirectory(), () => false);
}

/** The var folder of a Data.fs: the parent of `filestorage/`, else its own folder. */
function varOf(file: string): string {
  const dir = path.dirname(file);
  return path.basename(dir) === 'filestorage' ? path.dirname(dir) : dir;
}

const ZCONF_CANDIDATES = [
  'zope.conf',
  'etc/zope.conf',
  'instance/etc/zope.conf',
  'parts/instance/etc/zope.conf',
  'parts/client1/etc/zope.conf',
  'zeo.conf',
  'etc/zeo.conf',
  'parts/zeoserver/etc/zeo.conf',
  'parts/zeo/etc/zeo.conf',
];

export async function discoverDeployment(dir: string, o: DiscoverOverrides = {}): Promise<Deployment> {
  const root = path.resolve(dir);
  if (!(await isDir(root))) {
    throw new PloneBackupError('SOURCE_MISSING', `The folder ${root} does not exist.`, { path: root, hint: 'Pass the deployment folder with --dir.' });
  }
  const settings: DeploymentSettings = { ...DEFAULT_SETTINGS };
  let dep: Deployment | undefined;

  if (o.file) {
    const file = path.resolve(root, o.file);
    const varDir = varOf(file);
    const blobDir = o.blobDir ? path.resolve(root, o.blobDir) : undefined;
    dep = { root, varDir, source: 'options', storages: [{ name: 'main', file, blobDir, dirs: defaultDirs(o.backupRoot ? path.resolve(root, o.backupRoot) : varDir, 'main') }], settings };
  }

  const configFile = o.config ? path.resolve(root, o.config) : path.join(root, CONFIG_FILE);
  // A plone-backup.json that is there but cannot be read (a folder, a dangling
  // link) is an error, never silently passed over for another source.
  if (!dep && (o.config || (await fsp.lstat(configFile).then(() => true, () => false)))) dep = await fromConfigFile(root, configFile, settings);

  if (!dep) {
    for (const c of ZCONF_CANDIDATES) {
      const f = path.join(root, c);
      if (await isFile(f)) {
        dep = await fromZConfig(root, f, settings, o.backupRoot);
        if (dep) break;
      }
    }
  }
  if (!dep) dep = await fromBuildout(root, settings, o.backupRoot);
  if (!dep) {
    throw new PloneBackupError('SOURCE_MISSING', `No Plone deployment found in ${root}.`, {
      path: root,
      hint: `Run it in the folder holding var/filestorage/Data.fs or zope.conf, pass --dir, or write a ${CONFIG_FILE}.`,
    });
  }
  if (o.keep !== undefined) dep.settings.keep = o.keep;
  if (o.gzip !== undefined) dep.settings.gzip = o.gzip;
  if (o.quick !== undefined) dep.settings.quick = o.quick;
  if (!Number.isInteger(dep.settings.keep) || dep.settings.keep < 1) {
    throw new PloneBackupError('USAGE', `keep must be a whole number of at least 1, not ${dep.settings.keep}.`, { hint: 'Keeping no backup would delete them all.' });
  }
  return dep;
}

async function fromBuildout(root: string, settings: DeploymentSettings, backupRoot?: string): Promise<Deployment | undefined> {
  const varDir = path.join(root, 'var');
  const fsDir = path.join(varDir, 'filestorage');
  const main = path.join(fsDir, 'Data.fs');
  if (!(await isFile(main))) return undefined;
  const base = backupRoot ? path.resolve(root, backupRoot) : varDir;
  const storages: StorageConfig[] = [];
  // A storage has blobs when its blobstorage is there, or when its blob
  // backups are: a site whose var/blobstorage was lost must get it back
  // from a restore, not a restore that silently leaves the blobs out.
  const withBlobs = async (blob: string, dirs: BackupDirs) => {
    for (const d of [blob, dirs.blobBackups, dirs.blobSnapshots, dirs.blobZips]) if (await isDir(d)) return blob;
    return undefined;
  };
  const mainDirs = defaultDirs(base, 'main');
  storages.push({ name: 'main', file: main, blobDir: await withBlobs(path.join(varDir, 'blobstorage'), mainDirs), dirs: mainDirs });
  for (const n of (await fsp.readdir(fsDir)).sort()) {
    if (!n.endsWith('.fs') || n === 'Data.fs') continue;
    const name = n.slice(0, -3);
    const dirs = defaultDirs(base, name);
    storages.push({ name, file: path.join(fsDir, n), blobDir: await withBlobs(path.join(varDir, `blobstorage_${name}`), dirs), dirs });
  }
  return { root, varDir, source: 'buildout', storages, settings };
}

/**
 * Reads a configuration file (plone-backup.json, zope.conf) as hostile input:
 * a regular file of at most READ_CAPS.config, opened so that a FIFO never
 * blocks and refused before a byte is read when it is a FIFO, a device (a link
 * to /dev/zero) or a folder. Such a file is the user's mistake: USAGE, naming
 * it. Other errors (ENOENT) pass through.
 */
async function readConfigText(file: string): Promise<string> {
  try {
    return (await readFileCapped(file, READ_CAPS.config, { what: path.basename(file) })).toString('utf8');
  } catch (e) {
    if (!PloneBackupError.is(e, 'TOO_LARGE')) throw e;
    const st = await fsp.stat(file).catch(() => undefined);
    const why = st?.isDirectory()
      ? 'it cannot be read (it is a folder)'
      : st?.isFile()
        ? `it cannot be read (it is ${st.size} bytes; a configuration file is at most ${READ_CAPS.config} bytes)`
        : 'it cannot be read (it is not a regular file but a FIFO, a device or a socket)';
    throw new PloneBackupError('USAGE', `${file} cannot be used: ${why}.`, { path: file, hint: 'Point it at an ordinary configuration file.', cause: e });
  }
}

async function fromZConfig(root: string, file: string, settings: DeploymentSettings, backupRoot?: string): Promise<Deployment | undefined> {
  const text = await readConfigText(file);
  const found = storagesOf(parseZConfig(text, file));
  if (found.length === 0) return undefined;
  const rel = (p: string) => path.resolve(path.dirname(file), p);
  // The main database: mounted at "/", or named main / 1, or else the first one.
  const mainIdx = Math.max(
    0,
    found.findIndex((s) => s.mountPoint === '/' || s.db === 'main' || s.db === '1'),
  );
  const varDir = varOf(rel(found[mainIdx]!.path));
  const base = backupRoot ? path.resolve(root, backupRoot) : varDir;
  const used = new Set<string>();
  const storages = found.map((s, i) => {
    let name = i === mainIdx ? 'main' : (s.db ?? path.basename(s.path).replace(/\.fs$/, ''));
    name = name.replace(/[^A-Za-z0-9_.-]/g, '_');
    while (used.has(name)) name += '_';
    used.add(name);
    return { name, file: rel(s.path), blobDir: s.blobDir ? rel(s.blobDir) : undefined, dirs: defaultDirs(base, name) };
  });
  return { root, varDir, source: 'zconfig', configFile: file, storages, settings };
}

interface ConfigJson {
  var?: string;
  keep?: number;
  keepSnapshots?: number;
  keepZips?: number;
  gzip?: boolean;
  quick?: boolean;
  storages?: { name?: string; file?: string; blobDir?: string; backups?: string; blobBackups?: string; snapshots?: string; blobSnapshots?: string; zips?: string; blobZips?: string }[];
}

async function fromConfigFile(root: string, file: string, settings: DeploymentSettings): Promise<Deployment> {
  let cfg: ConfigJson;
  const bad = (why: string): never => {
    throw new PloneBackupError('USAGE', `${file} cannot be used: ${why}.`, { path: file, hint: 'Fix it; the README lists its settings.' });
  };
  let text = '';
  try {
    text = await readConfigText(file);
  } catch (e) {
    if (PloneBackupError.is(e)) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') bad((await fsp.lstat(file).then(() => true, () => false)) ? 'it cannot be read (a link to nothing)' : 'it does not exist');
    if (code === 'EACCES' || code === 'EPERM') bad('it cannot be read (permission denied)');
    if (code === 'EISDIR') bad('it cannot be read (it is a folder)');
    bad(`it cannot be read (${code ?? (e as Error).message})`);
  }
  try {
    cfg = JSON.parse(text) as ConfigJson;
  } catch (e) {
    bad(`it is not valid JSON (${(e as Error).message})`);
  }
  if (typeof cfg! !== 'object' || cfg! === null || Array.isArray(cfg!)) bad('it must hold a JSON object');
  const base = path.dirname(file);
  const num = (v: unknown, name: string) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad(`"${name}" must be a whole number of at least 1`);
    return v as number;
  };
  const str = (v: unknown, name: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') bad(`"${name}" must be a path (a non-empty string)`);
    return v as string;
  };
  const bool = (v: unknown, name: string) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') bad(`"${name}" must be true or false`);
    return v as boolean;
  };
  settings.keep = num(cfg!.keep, 'keep') ?? settings.keep;
  settings.keepSnapshots = num(cfg!.keepSnapshots, 'keepSnapshots') ?? settings.keepSnapshots;
  settings.keepZips = num(cfg!.keepZips, 'keepZips') ?? settings.keepZips;
  settings.gzip = bool(cfg!.gzip, 'gzip') ?? settings.gzip;
  settings.quick = bool(cfg!.quick, 'quick') ?? settings.quick;
  const varDir = path.resolve(base, str(cfg!.var, 'var') ?? 'var');
  const list = cfg!.storages ?? [{}];
  if (!Array.isArray(list) || list.length === 0) bad('"storages" must be a non-empty list');
  const storages = list.map((s, i) => {
    if (typeof s !== 'object' || s === null || Array.isArray(s)) bad(`storage ${i + 1} must be an object`);
    for (const k of ['file', 'blobDir', 'backups', 'blobBackups', 'snapshots', 'blobSnapshots', 'zips', 'blobZips'] as const) str(s[k], `storages[${i}].${k}`);
    const name = s.name ?? (i === 0 ? 'main' : undefined);
    if (!name || typeof name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(name)) bad(`storage ${i + 1} needs a "name" of letters, digits, _ . -`);
    const d = defaultDirs(varDir, name!);
    const p = (v: string | undefined, dflt: string) => (v === undefined ? dflt : path.resolve(base, v));
    return {
      name: name!,
      file: p(s.file, path.join(varDir, 'filestorage', name === 'main' ? 'Data.fs' : `${name}.fs`)),
      blobDir: s.blobDir === undefined ? (i === 0 ? path.join(varDir, 'blobstorage') : undefined) : path.resolve(base, s.blobDir),
      dirs: {
        backups: p(s.backups, d.backups),
        blobBackups: p(s.blobBackups, d.blobBackups),
        snapshots: p(s.snapshots, d.snapshots),
        blobSnapshots: p(s.blobSnapshots, d.blobSnapshots),
        zips: p(s.zips, d.zips),
        blobZips: p(s.blobZips, d.blobZips),
      },
    };
  });
  return { root, varDir, source: 'config', configFile: file, storages, settings };
}
