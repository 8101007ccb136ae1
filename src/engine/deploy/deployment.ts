/**
 * Finding a deployment: which Data.fs files and blob dirs a Plone site has,
 * where their backups go and how they are made. Layers, each over the one
 * before (so a flag beats a setting beats plone-backup.json beats buildout.cfg
 * beats the defaults):
 *
 *   1. the storages: a buildout.cfg's collective.recipe.backup part (its
 *      locations and options, derived as the recipe derives them; buildout.ts),
 *      else zope.conf / zeo.conf (pip-installed Plone 6, or a buildout's
 *      parts/: every <filestorage> with its blob-dir, several <zodb_db>
 *      mounts), else a buildout's var/filestorage/Data.fs and var/blobstorage
 *      (plus any other var/filestorage/NAME.fs with var/blobstorage_NAME),
 *      else the official plone-backend image's layout seen from the
 *      container's root (its /app/etc/zope.conf, its /data volume; see
 *      fromContainer), else the folder as a var folder itself (that /data
 *      volume mounted in a sidecar: filestorage/Data.fs, blobstorage);
 *   2. plone-backup.json in the folder: its settings, and its storages when it
 *      names them;
 *   3. the overrides of the caller (command-line flags, the extension's
 *      settings).
 *
 * Backup folders default to collective.recipe.backup's names for the part
 * (`backups`, `blobstoragebackups`, ... for a part named backup;
 * `plonebackups`, `plonebackup-blobstorages`, ... for one named plonebackup),
 * with the `_NAME` suffix for every storage but the main one. Before anything
 * is written the folders are checked as the recipe checks them, and more
 * (validateDeployment).
 */

import { promises as fsp, readlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { READ_CAPS, readFileCapped } from '../base/io';
import { DEFAULT_COMPRESS_LEVEL, MAX_COMPRESS_LEVEL, MIN_COMPRESS_LEVEL, isCompressLevel } from '../base/gzip';
import { parseZConfig, readConfigFile, storagesOf } from './zconfig';
import { closestKey, expandPath as expandWith, readBuildout, type RecipePart } from './buildout';

/** `~` and `$VAR` in a path (the recipe's construct_path), with this process's environment by default. */
export function expandPath(p: string, env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string {
  return expandWith(p, env, home);
}

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

/**
 * How regular backups keep their blobs: a manifest per generation over a
 * shared pool of blob files (our default: each backup costs what changed), a
 * folder per generation (hard links to the previous one: the recipe's
 * layout, a buildout's default), or an archive (collective.recipe.backup's archive_blob,
 * compress_blob), or a full archive with GNU tar listed-incremental deltas
 * (incremental_blobs).
 */
export type BlobFormat = 'pool' | 'dir' | 'tar' | 'tar.gz' | 'incremental' | 'incremental.gz';

export interface DeploymentSettings {
  /** Full filestorage backups kept (with their incrementals and blob generations); 0 keeps everything. */
  keep: number;
  keepSnapshots: number;
  keepZips: number;
  gzip: boolean;
  /** The gzip level of filestorage pieces, 1 (fastest) to 9 (smallest). */
  compressLevel: number;
  quick: boolean;
  /** Every regular backup is a full one (the recipe's `full`). */
  full: boolean;
  blobFormat: BlobFormat;
  /** Back up blobs at all (the recipe's backup_blobs). */
  backupBlobs: boolean;
  /** Only blobs, no filestorage (the recipe's only_blobs). */
  onlyBlobs: boolean;
  /** The first blob generation hard-links from the live blobstorage (same disk) instead of copying. */
  hardLinkFirstCopy: boolean;
  /** Days that blob-only generations are kept at least (the recipe's keep_blob_days). */
  keepBlobDays: number;
  /** Shell commands run before and after backups and restores. */
  preCommand: string;
  postCommand: string;
  /** A shell command run when a recorded run fails, with the error in its environment (runlog.ts). */
  onFailure: string;
  enableSnapshotrestore: boolean;
  enableZipbackup: boolean;
}

/** The collective.recipe.backup part a deployment was read from, and its script names. */
export interface RecipePartInfo {
  name: string;
  configFile: string;
  scripts: Record<string, string>;
}

export interface Deployment {
  root: string;
  varDir: string;
  /** Where the storages came from: plone-backup.json, zope.conf, a buildout.cfg recipe part, a var folder alone (buildout's var/, the image's /data), --file. */
  source: 'config' | 'zconfig' | 'recipe' | 'buildout' | 'options';
  configFile?: string;
  storages: StorageConfig[];
  settings: DeploymentSettings;
  part?: RecipePartInfo;
  /** The recipe's alternative_restore_source: the backup folders (of another site) `altrestore` restores from. */
  altSource?: { repo: string; blobs?: string };
  /** plone-backup.json's `remote`: where `push` sends generations and `--remote` reads them (remote/). */
  remote?: RemoteConfig;
  /** Configuration that was read but is doubtful (an unknown key, a deprecated name), one sentence each. */
  warnings: string[];
  /** What an option accepted for compatibility means here (said with --verbose). */
  notes?: string[];
  /** The recipe's `debug = true`: say what is being done, as --verbose. */
  debug?: boolean;
}

export const DEFAULT_SETTINGS: DeploymentSettings = {
  keep: 2,
  keepSnapshots: 2,
  keepZips: 1,
  gzip: true,
  compressLevel: DEFAULT_COMPRESS_LEVEL,
  quick: true,
  full: false,
  // Our own deployments: a manifest per generation over a shared pool, in
  // O(new blobs) (blobpool.ts); a buildout's recipe part gets its own layout.
  blobFormat: 'pool',
  backupBlobs: true,
  onlyBlobs: false,
  hardLinkFirstCopy: false,
  keepBlobDays: 14,
  preCommand: '',
  postCommand: '',
  onFailure: '',
  enableSnapshotrestore: true,
  enableZipbackup: true,
};

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
  /** The gzip level (1 to 9). */
  compressLevel?: number;
  quick?: boolean;
  /** The collective.recipe.backup part of buildout.cfg to use when it has several. */
  part?: string;
  /** on_failure, instead of the configuration's (`--on-failure CMD`; '' runs none). */
  onFailure?: string;
  /** For ~ and $VAR in paths (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * collective.recipe.backup's folder names for a storage, after the part's
 * name: a part named `backup` gives backups, blobstoragebackups,
 * snapshotbackups, ...; any other name N gives Ns, N-blobstorages,
 * N-snapshots, N-blobstoragesnapshots, N-zips, N-blobstoragezips.
 */
export function defaultDirs(base: string, name: string, part = 'backup'): BackupDirs {
  const sfx = name === 'main' ? '' : `_${name}`;
  const n =
    part === 'backup'
      ? { backups: 'backup', blobBackups: 'blobstoragebackup', snapshots: 'snapshotbackup', blobSnapshots: 'blobstoragesnapshot', zips: 'zipbackup', blobZips: 'blobstoragezip' }
      : {
          backups: part,
          blobBackups: `${part}-blobstorage`,
          snapshots: `${part}-snapshot`,
          blobSnapshots: `${part}-blobstoragesnapshot`,
          zips: `${part}-zip`,
          blobZips: `${part}-blobstoragezip`,
        };
  return {
    backups: path.join(base, `${n.backups}s${sfx}`),
    blobBackups: path.join(base, `${n.blobBackups}s${sfx}`),
    snapshots: path.join(base, `${n.snapshots}s${sfx}`),
    blobSnapshots: path.join(base, `${n.blobSnapshots}s${sfx}`),
    zips: path.join(base, `${n.zips}s${sfx}`),
    blobZips: path.join(base, `${n.blobZips}s${sfx}`),
  };
}

async function isFile(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}
async function isDir(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
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
  const env = o.env ?? process.env;
  const backupRoot = o.backupRoot === undefined ? undefined : path.resolve(root, expandPath(o.backupRoot, env));

  // 1. The storages, and the settings of a recipe part.
  let dep: Deployment | undefined;
  if (o.file) {
    const file = path.resolve(root, expandPath(o.file, env));
    const varDir = varOf(file);
    const blobDir = o.blobDir ? path.resolve(root, expandPath(o.blobDir, env)) : undefined;
    dep = { root, varDir, source: 'options', storages: [{ name: 'main', file, blobDir, dirs: defaultDirs(varDir, 'main') }], settings: { ...DEFAULT_SETTINGS }, warnings: [] };
  }
  if (!dep) dep = await fromRecipe(root, o.part, env);
  else if (o.part !== undefined) throw new PloneBackupError('USAGE', '--part reads a buildout.cfg part; it cannot be combined with --file.', { hint: 'Pass one of them.' });
  if (!dep) {
    for (const c of ZCONF_CANDIDATES) {
      const f = path.join(root, c);
      if (await isFile(f)) {
        dep = await fromZConfig(root, f);
        if (dep) break;
      }
    }
  }
  if (!dep) dep = await fromVar(root, path.join(root, 'var'), backupRoot);
  if (!dep) dep = await fromContainer(root, backupRoot);
  if (!dep) dep = await fromVar(root, root, backupRoot);

  // 2. plone-backup.json. One that is there but cannot be read (a folder, a
  // dangling link) is an error, never silently passed over.
  const configFile = o.config ? path.resolve(root, expandPath(o.config, env)) : path.join(root, CONFIG_FILE);
  if (
    o.config ||
    (await fsp.lstat(configFile).then(
      () => true,
      () => false,
    ))
  )
    dep = await fromConfigFile(root, configFile, dep, env);
  if (!dep) {
    throw new PloneBackupError('SOURCE_MISSING', `No Plone deployment found in ${root}.`, {
      path: root,
      hint: `Run it in the folder holding buildout.cfg, var/filestorage/Data.fs, filestorage/Data.fs or zope.conf, pass --dir, or write a ${CONFIG_FILE}.`,
    });
  }

  // 3. The caller's overrides.
  if (backupRoot !== undefined) for (const s of dep.storages) s.dirs = defaultDirs(backupRoot, s.name, dep.part?.name);
  if (o.keep !== undefined) dep.settings.keep = o.keep;
  if (o.gzip !== undefined) dep.settings.gzip = o.gzip;
  if (o.compressLevel !== undefined) dep.settings.compressLevel = o.compressLevel;
  if (o.quick !== undefined) dep.settings.quick = o.quick;
  if (o.onFailure !== undefined) dep.settings.onFailure = o.onFailure;
  validateDeployment(dep);
  return dep;
}

/**
 * The checks before anything is written or deleted, as collective.recipe.backup
 * makes them and more: `keep` a whole number (0 keeps everything); for every
 * storage, the backup folders in use distinct, none inside another, none
 * inside (or holding) the live blobstorage. A snapshot
 * folder equal to the backup folder would have retention of one delete the
 * other; a backup folder inside the blobstorage would be restored into it.
 */
export function validateDeployment(dep: Deployment): void {
  const st = dep.settings;
  for (const k of ['keep', 'keepSnapshots', 'keepZips', 'keepBlobDays'] as const) {
    if (!Number.isInteger(st[k]) || st[k] < 0) {
      throw new PloneBackupError('CONFIG_BAD', `${k} must be a whole number (0 keeps everything), not ${st[k]}.`, { path: dep.configFile, hint: 'Fix the setting.' });
    }
  }
  if (!isCompressLevel(st.compressLevel)) {
    throw new PloneBackupError('CONFIG_BAD', `compressLevel must be a whole number from ${MIN_COMPRESS_LEVEL} to ${MAX_COMPRESS_LEVEL}, not ${st.compressLevel}.`, {
      path: dep.configFile,
      hint: 'Fix the setting.',
    });
  }
  if (!st.backupBlobs && st.onlyBlobs) {
    throw new PloneBackupError('CONFIG_BAD', 'backup_blobs is false and only_blobs true: there would be nothing to back up.', {
      path: dep.configFile,
      hint: 'Set one of them differently.',
    });
  }
  const LABEL: Record<keyof BackupDirs, string> = {
    backups: 'location (backups)',
    blobBackups: 'blobbackuplocation (blobBackups)',
    snapshots: 'snapshotlocation (snapshots)',
    blobSnapshots: 'blobsnapshotlocation (blobSnapshots)',
    zips: 'ziplocation (zips)',
    blobZips: 'blobziplocation (blobZips)',
  };
  const bad = (why: string, p: string): never => {
    throw new PloneBackupError('CONFIG_BAD', `The backup folders of ${dep.configFile ?? dep.root} cannot be used: ${why}.`, {
      path: p,
      hint: 'Give every backup folder its own place, outside the live filestorage and blobstorage folders.',
    });
  };
  const all: { storage: string; key: keyof BackupDirs; dir: string }[] = [];
  for (const s of dep.storages) {
    // A NUL byte is in no file name: a garbled configuration, refused before an OS call throws on it.
    for (const p of [s.file, s.blobDir ?? '', ...Object.values(s.dirs)]) {
      if (p.includes('\0'))
        throw new PloneBackupError('CONFIG_BAD', `The configuration of ${dep.configFile ?? dep.root} names a path with a NUL byte (${JSON.stringify(p.slice(0, 200))}).`, {
          path: dep.configFile,
          hint: 'Fix the path.',
        });
    }
    const keys = (Object.keys(LABEL) as (keyof BackupDirs)[]).filter((k) => s.blobDir || !k.startsWith('blob'));
    for (const k of keys) {
      const d = path.resolve(s.dirs[k]);
      // A folder beside Data.fs is harmless (a restore replaces the file); one in
      // or around the blobstorage is not: a restore swaps that folder whole.
      if (s.blobDir && isWithin(s.blobDir, d)) bad(`${LABEL[k]} ${d} is inside the live blobstorage ${s.blobDir}`, d);
      if (s.blobDir && isWithin(d, s.blobDir)) bad(`${LABEL[k]} ${d} holds the live blobstorage ${s.blobDir}`, d);
      all.push({ storage: s.name, key: k, dir: d });
    }
  }
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i]!;
      const b = all[j]!;
      const name = (x: typeof a) => `${LABEL[x.key]}${dep.storages.length > 1 ? ` of ${x.storage}` : ''}`;
      if (a.dir === b.dir) bad(`${name(a)} and ${name(b)} are the same folder ${a.dir}`, a.dir);
      if (isWithin(a.dir, b.dir)) bad(`${name(b)} ${b.dir} is inside ${name(a)} ${a.dir}`, b.dir);
      if (isWithin(b.dir, a.dir)) bad(`${name(a)} ${a.dir} is inside ${name(b)} ${b.dir}`, a.dir);
    }
  }
}

/**
 * A var folder alone: filestorage/Data.fs and blobstorage (plus any other
 * filestorage/NAME.fs with blobstorage_NAME), as a buildout's var/ and the
 * plone-backend image's /data volume hold them; the backups go beside them
 * (or under `backupRoot`, --backup-dir). A folder whose Data.fs was lost
 * still is one while its filestorage/ folder and the main storage's backups
 * are there: it is what a restore is run in.
 */
async function fromVar(root: string, varDir: string, backupRoot?: string): Promise<Deployment | undefined> {
  const fsDir = path.join(varDir, 'filestorage');
  const main = path.join(fsDir, 'Data.fs');
  const base = varDir;
  // Where the backups of a storage are looked for (discoverDeployment moves them there too).
  const probe = (name: string) => defaultDirs(backupRoot ?? base, name);
  const anyDir = async (dirs: string[]) => {
    for (const d of dirs) if (await isDir(d)) return true;
    return false;
  };
  const m = probe('main');
  if (!(await isFile(main)) && !((await isDir(fsDir)) && (await anyDir([m.backups, m.snapshots, m.zips])))) return undefined;
  const storages: StorageConfig[] = [];
  // A storage has blobs when its blobstorage is there, or when its blob
  // backups are: a site whose var/blobstorage was lost must get it back
  // from a restore, not a restore that silently leaves the blobs out.
  const withBlobs = async (blob: string, name: string) => {
    const dirs = probe(name);
    return (await anyDir([blob, dirs.blobBackups, dirs.blobSnapshots, dirs.blobZips])) ? blob : undefined;
  };
  storages.push({ name: 'main', file: main, blobDir: await withBlobs(path.join(varDir, 'blobstorage'), 'main'), dirs: defaultDirs(base, 'main') });
  for (const n of (await fsp.readdir(fsDir)).sort()) {
    if (!n.endsWith('.fs') || n === 'Data.fs') continue;
    const name = n.slice(0, -3);
    storages.push({ name, file: path.join(fsDir, n), blobDir: await withBlobs(path.join(varDir, `blobstorage_${name}`), name), dirs: defaultDirs(base, name) });
  }
  return { root, varDir, source: 'buildout', storages, settings: { ...DEFAULT_SETTINGS }, warnings: [] };
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

/**
 * The storages of a zope.conf / zeo.conf. `fsRoot`: where the file system the
 * configuration was written for is (a container's root seen from outside it);
 * its absolute paths, and the files it includes by them, are taken there.
 */
async function fromZConfig(root: string, file: string, fsRoot?: string): Promise<Deployment | undefined> {
  const text = await readConfigText(file);
  const there = (p: string) => (fsRoot === undefined ? p : underRoot(fsRoot, p));
  const found = storagesOf(parseZConfig(text, file, fsRoot === undefined ? undefined : (inc) => readConfigFile(isWithin(fsRoot, inc) ? inc : there(inc))));
  if (found.length === 0) return undefined;
  const rel = (p: string) => (path.isAbsolute(p) ? there(p) : path.resolve(path.dirname(file), p));
  // The main database: mounted at "/", or named main / 1, or else the first one.
  const mainIdx = Math.max(
    0,
    found.findIndex((s) => s.mountPoint === '/' || s.db === 'main' || s.db === '1'),
  );
  const varDir = varOf(rel(found[mainIdx]!.path));
  const base = varDir;
  const used = new Set<string>();
  const storages = found.map((s, i) => {
    let name = i === mainIdx ? 'main' : (s.db ?? path.basename(s.path).replace(/\.fs$/, ''));
    name = name.replace(/[^A-Za-z0-9_.-]/g, '_');
    while (used.has(name)) name += '_';
    used.add(name);
    return { name, file: rel(s.path), blobDir: s.blobDir ? rel(s.blobDir) : undefined, dirs: defaultDirs(base, name) };
  });
  return { root, varDir, source: 'zconfig', configFile: file, storages, settings: { ...DEFAULT_SETTINGS }, warnings: [] };
}

/** The instance and the volume of the official plone-backend image (github.com/plone/plone-backend). */
const IMAGE_APP = 'app';
const IMAGE_DATA = 'data';

/**
 * The official plone-backend image, seen from the container's root `fsRoot`
 * (`/` inside the container or in a sidecar that mounts its volume at /data;
 * a copy of its file system elsewhere): the instance in /app, whose
 * etc/zope.conf names $INSTANCE/var/filestorage/Data.fs and
 * $INSTANCE/var/blobstorage, /app/var being a link to the /data volume. That
 * zope.conf is read (with the links followed as the container follows them,
 * see underRoot) when it is there beside /data and names a filestorage (the
 * image's zeo.conf and relstorage.conf name none); else /data itself is taken
 * as the var folder, as a sidecar that has only the volume sees it.
 */
async function fromContainer(fsRoot: string, backupRoot: string | undefined): Promise<Deployment | undefined> {
  const data = path.join(fsRoot, IMAGE_DATA);
  if (!(await isDir(data))) return undefined;
  const conf = path.join(fsRoot, IMAGE_APP, 'etc', 'zope.conf');
  if (await isFile(conf)) {
    const dep = await fromZConfig(fsRoot, conf, fsRoot);
    if (dep) return dep;
  }
  return fromVar(fsRoot, data, backupRoot);
}

/** Whether `inner` is `outer` or inside it (by name). */
function isWithin(outer: string, inner: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** Links followed by underRoot before it gives up on a path (Linux's own limit). */
const MAX_LINKS = 40;

/**
 * The absolute path `p` of a file system whose root is at `fsRoot`, as a path
 * here: every link on the way is followed as that file system would follow it
 * (an absolute target from `fsRoot`, `..` never above it), so the image's
 * /app/var -> /data link leads into `fsRoot`/data. A part that is no link (or
 * not there) is kept as it is; after MAX_LINKS links (a loop) the rest is
 * taken as written. With `fsRoot` `/`, the path with its links resolved.
 */
function underRoot(fsRoot: string, p: string): string {
  const top = path.resolve(fsRoot);
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  let cur = top;
  let links = 0;
  while (parts.length) {
    const name = parts.shift()!;
    if (name === '..') {
      if (cur !== top) cur = path.dirname(cur);
      continue;
    }
    const next = path.join(cur, name);
    let target: string | undefined;
    if (links < MAX_LINKS) {
      try {
        target = readlinkSync(next);
      } catch {
        target = undefined;
      }
    }
    if (target === undefined) {
      cur = next;
      continue;
    }
    links++;
    parts.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'));
    if (target.startsWith('/')) cur = top;
  }
  return cur;
}

/** Where each key of plone-backup.json goes; the recipe's option names are accepted beside ours. */
const JSON_SETTINGS = {
  keep: 'int',
  keepSnapshots: 'int',
  keepZips: 'int',
  gzip: 'bool',
  compressLevel: 'level',
  quick: 'bool',
  full: 'bool',
  blobFormat: 'format',
  archive_blob: 'bool',
  compress_blob: 'bool',
  incremental_blobs: 'bool',
  blob_timestamps: 'bool',
  backup_blobs: 'bool',
  only_blobs: 'bool',
  rsync_hard_links_on_first_copy: 'bool',
  keep_blob_days: 'int',
  pre_command: 'string',
  post_command: 'string',
  on_failure: 'string',
  enable_snapshotrestore: 'bool',
  enable_zipbackup: 'bool',
  use_rsync: 'bool',
  rsync_options: 'string',
  debug: 'bool',
} as const;
/** Paths of the main storage, under the recipe's names (relative to the file's folder). */
const JSON_MAIN_PATHS = {
  datafs: 'file',
  blob_storage: 'blobDir',
  location: 'backups',
  blobbackuplocation: 'blobBackups',
  snapshotlocation: 'snapshots',
  blobsnapshotlocation: 'blobSnapshots',
  ziplocation: 'zips',
  blobziplocation: 'blobZips',
} as const;
const JSON_OTHER = ['var', 'storages', 'locationprefix', 'alternative_restore_source', 'remote', '$schema', 'comment'] as const;
const STORAGE_KEYS = ['name', 'file', 'blobDir', 'backups', 'blobBackups', 'snapshots', 'blobSnapshots', 'zips', 'blobZips'] as const;
export const CONFIG_KEYS: readonly string[] = [...Object.keys(JSON_SETTINGS), ...Object.keys(JSON_MAIN_PATHS), ...JSON_OTHER];

/** The blob format the recipe's three archive options give. */
export function blobFormatOf(archive: boolean, compress: boolean, incremental: boolean): BlobFormat {
  if (!archive) return 'dir';
  if (incremental) return compress ? 'incremental.gz' : 'incremental';
  return compress ? 'tar.gz' : 'tar';
}

async function fromConfigFile(root: string, file: string, base: Deployment | undefined, env: NodeJS.ProcessEnv): Promise<Deployment> {
  const bad = (why: string): never => {
    throw new PloneBackupError('USAGE', `${file} cannot be used: ${why}.`, { path: file, hint: 'Fix it; the README lists its settings.' });
  };
  let text = '';
  try {
    text = await readConfigText(file);
  } catch (e) {
    if (PloneBackupError.is(e)) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      bad(
        (await fsp.lstat(file).then(
          () => true,
          () => false,
        ))
          ? 'it cannot be read (a link to nothing)'
          : 'it does not exist',
      );
    if (code === 'EACCES' || code === 'EPERM') bad('it cannot be read (permission denied)');
    if (code === 'EISDIR') bad('it cannot be read (it is a folder)');
    bad(`it cannot be read (${code ?? (e as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    bad(`it is not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) bad('it must hold a JSON object');
  const cfg = parsed as Record<string, unknown>;
  const dir = path.dirname(file);
  const warnings = [...(base?.warnings ?? [])];
  for (const k of Object.keys(cfg)) {
    if (CONFIG_KEYS.includes(k)) continue;
    const near = closestKey(k, CONFIG_KEYS);
    warnings.push(`${file}: unknown key "${k}" is ignored${near ? `; did you mean "${near}"?` : '.'}`);
  }
  const str = (v: unknown, name: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') bad(`"${name}" must be a path (a non-empty string)`);
    return v as string;
  };
  const resolve = (v: string) => path.resolve(dir, expandPath(v, env));

  const settings: DeploymentSettings = { ...(base?.settings ?? DEFAULT_SETTINGS) };
  const flags: Record<string, boolean> = {};
  for (const [k, type] of Object.entries(JSON_SETTINGS)) {
    const v = cfg[k];
    if (v === undefined) continue;
    if (type === 'int' && (typeof v !== 'number' || !Number.isInteger(v) || v < 0)) bad(`"${k}" must be a whole number (0 keeps everything)`);
    if (type === 'bool' && typeof v !== 'boolean') bad(`"${k}" must be true or false`);
    if (type === 'string' && typeof v !== 'string') bad(`"${k}" must be a string`);
    if (type === 'level' && !isCompressLevel(v)) bad(`"${k}" must be a whole number from ${MIN_COMPRESS_LEVEL} (fastest) to ${MAX_COMPRESS_LEVEL} (smallest)`);
    if (type === 'format' && !['pool', 'dir', 'tar', 'tar.gz', 'incremental', 'incremental.gz'].includes(v as string))
      bad(`"${k}" must be one of pool, dir, tar, tar.gz, incremental, incremental.gz`);
    if (type === 'bool') flags[k] = v as boolean;
  }
  const n = (k: string) => cfg[k] as number | undefined;
  settings.keep = n('keep') ?? settings.keep;
  settings.keepSnapshots = n('keepSnapshots') ?? (n('keep') !== undefined ? settings.keep : settings.keepSnapshots);
  settings.keepZips = n('keepZips') ?? settings.keepZips;
  settings.keepBlobDays = n('keep_blob_days') ?? settings.keepBlobDays;
  settings.gzip = flags.gzip ?? settings.gzip;
  settings.compressLevel = n('compressLevel') ?? settings.compressLevel;
  settings.quick = flags.quick ?? settings.quick;
  settings.full = flags.full ?? settings.full;
  settings.backupBlobs = flags.backup_blobs ?? settings.backupBlobs;
  settings.onlyBlobs = flags.only_blobs ?? settings.onlyBlobs;
  settings.hardLinkFirstCopy = flags.rsync_hard_links_on_first_copy ?? settings.hardLinkFirstCopy;
  settings.enableSnapshotrestore = flags.enable_snapshotrestore ?? settings.enableSnapshotrestore;
  settings.enableZipbackup = flags.enable_zipbackup ?? settings.enableZipbackup;
  settings.preCommand = (cfg.pre_command as string | undefined) ?? settings.preCommand;
  settings.postCommand = (cfg.post_command as string | undefined) ?? settings.postCommand;
  settings.onFailure = (cfg.on_failure as string | undefined) ?? settings.onFailure;
  if (cfg.blobFormat !== undefined) settings.blobFormat = cfg.blobFormat as BlobFormat;
  if (flags.archive_blob !== undefined || flags.compress_blob !== undefined || flags.incremental_blobs !== undefined) {
    const was = settings.blobFormat;
    settings.blobFormat = blobFormatOf(
      flags.archive_blob ?? (was !== 'dir' && was !== 'pool'),
      flags.compress_blob ?? was.endsWith('.gz'),
      flags.incremental_blobs ?? was.startsWith('incremental'),
    );
  }

  const varDir = cfg.var !== undefined ? resolve(str(cfg.var, 'var')!) : (base?.varDir ?? path.resolve(dir, 'var'));
  const prefix = cfg.locationprefix !== undefined ? resolve(str(cfg.locationprefix, 'locationprefix')!) : undefined;
  let storages: StorageConfig[];
  if (cfg.storages !== undefined || !base || cfg.var !== undefined) {
    const list = (cfg.storages ?? [{}]) as unknown;
    if (!Array.isArray(list) || list.length === 0) bad('"storages" must be a non-empty list');
    storages = (list as unknown[]).map((raw, i) => {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad(`storage ${i + 1} must be an object`);
      const s = raw as Record<string, unknown>;
      for (const k of Object.keys(s)) {
        if (!(STORAGE_KEYS as readonly string[]).includes(k)) {
          const near = closestKey(k, STORAGE_KEYS);
          warnings.push(`${file}: unknown key "storages[${i}].${k}" is ignored${near ? `; did you mean "${near}"?` : '.'}`);
        }
      }
      for (const k of STORAGE_KEYS) if (k !== 'name') str(s[k], `storages[${i}].${k}`);
      const name = s.name ?? (i === 0 ? 'main' : undefined);
      if (!name || typeof name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(name)) bad(`storage ${i + 1} needs a "name" of letters, digits, _ . -`);
      const d = defaultDirs(prefix ?? varDir, name as string, base?.part?.name);
      const p = (v: unknown, dflt: string) => (v === undefined ? dflt : resolve(v as string));
      return {
        name: name as string,
        file: p(s.file, path.join(varDir, 'filestorage', name === 'main' ? 'Data.fs' : `${name as string}.fs`)),
        blobDir: s.blobDir === undefined ? (i === 0 ? path.join(varDir, 'blobstorage') : undefined) : resolve(s.blobDir as string),
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
  } else {
    storages = base.storages.map((s) => ({ ...s, dirs: prefix ? defaultDirs(prefix, s.name, base.part?.name) : { ...s.dirs } }));
  }
  // The recipe's single-storage keys name the main storage.
  const main = storages[0]!;
  for (const [k, field] of Object.entries(JSON_MAIN_PATHS)) {
    const v = str(cfg[k], k);
    if (v === undefined) continue;
    if (field === 'file') main.file = resolve(v);
    else if (field === 'blobDir') main.blobDir = resolve(v);
    else main.dirs[field] = resolve(v);
  }
  if (!settings.backupBlobs) for (const s of storages) s.blobDir = undefined;
  let altSource = base?.altSource;
  if (cfg.alternative_restore_source !== undefined) {
    const a = cfg.alternative_restore_source;
    if (typeof a !== 'string') bad('"alternative_restore_source" must be a string: "1 FILESTORAGE_BACKUPS [BLOB_BACKUPS]", as in the recipe');
    altSource = parseAltSource(
      a as string,
      (v) => resolve(v),
      (why) => bad(`"alternative_restore_source" ${why}`),
    );
  }
  const remote = cfg.remote === undefined ? undefined : parseRemote(cfg.remote, bad, resolve);
  return {
    root,
    varDir,
    source: 'config',
    configFile: file,
    storages,
    settings,
    part: base?.part,
    altSource,
    remote,
    warnings,
    notes: base?.notes,
    debug: (cfg.debug as boolean | undefined) ?? base?.debug,
  };
}

/**
 * A buildout.cfg's collective.recipe.backup part (buildout.ts derives it as
 * the recipe does), as a deployment; undefined without a buildout.cfg or
 * without such a part. Several parts: `part` names one, else the first listed
 * in [buildout] parts is used and the others are named in a warning.
 */
async function fromRecipe(root: string, part: string | undefined, env: NodeJS.ProcessEnv): Promise<Deployment | undefined> {
  const read = await readBuildout(root, { env, home: env.HOME ?? os.homedir() });
  if (!read || read.parts.length === 0) {
    if (part !== undefined) {
      throw new PloneBackupError(
        'USAGE',
        `--part ${part}: ${read ? `${path.join(root, 'buildout.cfg')} has no collective.recipe.backup part` : `there is no buildout.cfg in ${root}`}.`,
        {
          path: root,
          hint: 'Leave out --part, or run it in the buildout folder.',
        },
      );
    }
    return undefined;
  }
  const names = read.parts.map((p) => p.name);
  const p: RecipePart | undefined = part === undefined ? read.parts[0] : read.parts.find((x) => x.name === part);
  if (!p) {
    throw new PloneBackupError('USAGE', `buildout.cfg has no collective.recipe.backup part named ${part}; it has ${names.join(', ')}.`, {
      path: read.parts[0]!.configFile,
      hint: `Pass --part ${names[0]}.`,
    });
  }
  const warnings = [...read.warnings, ...p.warnings].map((w) => `${w.file ? `${w.file}${w.line ? `:${w.line}` : ''}: ` : ''}${w.message}`);
  if (part === undefined && names.length > 1)
    warnings.push(`buildout.cfg has ${names.length} collective.recipe.backup parts (${names.join(', ')}); using [${p.name}]. Pass --part to choose.`);
  const o = p.options;
  if (!o.blobTimestamps)
    warnings.push(
      `[${p.name}] blob_timestamps = false: plone-backup writes timestamped blob backups all the same (their stamps tie them to the filestorage backups); it reads the numbered ones the recipe wrote.`,
    );
  const notes: string[] = [];
  if (!o.useRsync || o.rsyncOptions) {
    notes.push(
      `[${p.name}] use_rsync = ${o.useRsync}${o.rsyncOptions ? `, rsync_options = ${o.rsyncOptions}` : ''}: plone-backup copies blob files itself (hard links to the previous generation, as rsync --link-dest; a reflink or a copy for new files), so these options change nothing.`,
    );
  }
  const altSource = o.alternativeRestoreSource ? { repo: o.alternativeRestoreSource.datafs, blobs: o.alternativeRestoreSource.blobStorage } : undefined;
  return {
    root,
    varDir: p.varDir,
    source: 'recipe',
    configFile: p.configFile,
    storages: [{ name: 'main', file: p.datafs, blobDir: o.backupBlobs ? p.blobStorage : undefined, dirs: { ...p.locations } }],
    settings: {
      ...DEFAULT_SETTINGS,
      keep: o.keep,
      // The recipe keeps `keep` snapshots too, and one zip backup.
      keepSnapshots: o.keep,
      keepZips: 1,
      full: o.full,
      blobFormat: blobFormatOf(o.archiveBlob, o.compressBlob, o.incrementalBlobs),
      backupBlobs: o.backupBlobs,
      onlyBlobs: o.onlyBlobs,
      hardLinkFirstCopy: o.rsyncHardLinksOnFirstCopy,
      keepBlobDays: o.keepBlobDays,
      preCommand: o.preCommand,
      postCommand: o.postCommand,
      enableSnapshotrestore: o.enableSnapshotrestore,
      enableZipbackup: o.enableZipbackup,
    },
    part: { name: p.name, configFile: p.configFile, scripts: { ...p.scripts } },
    altSource,
    warnings,
    notes,
    debug: o.debug,
  };
}

/**
 * The recipe's alternative_restore_source: one line `STORAGE FS_BACKUPS
 * [BLOB_BACKUPS]` (storage `1` is the main one; blank lines and # comments
 * skipped). Undefined for an empty value.
 */
/** plone-backup.json's `remote` (remote/): never a credential, never the passphrase itself. */
export interface RemoteConfig {
  url: string;
  endpoint?: string;
  /** A key file (resolved against the configuration's folder). */
  keyFile?: string;
  /** The name of the environment variable holding the passphrase. */
  passphraseEnv?: string;
  keep?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}

const REMOTE_KEYS = ['url', 'endpoint', 'keyFile', 'passphraseEnv', 'keep', 'keepDaily', 'keepWeekly', 'keepMonthly'];

/**
 * `"remote": {"url": "s3://BUCKET/PREFIX" | "file:///DIR", "endpoint": "https://…",
 * "keyFile": "…" | "passphraseEnv": "VAR", "keep": N, "keepDaily": N, …}`,
 * checked as written by someone else: only these keys, strings of sane
 * length, a URL of one of the two schemes without credentials (they come
 * from the AWS environment or profile, never from a workspace's file), and
 * no passphrase (only the name of the variable that holds it).
 */
export function parseRemote(v: unknown, bad: (why: string) => never, resolve: (p: string) => string = (p) => p): RemoteConfig {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad('"remote" must be an object: {"url": "s3://BUCKET/PREFIX", "endpoint": "https://…"}');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (/pass(word|phrase)$/i.test(k))
      bad(`"remote.${k.slice(0, 40)}": a passphrase never goes in plone-backup.json; set "passphraseEnv" to the name of the environment variable that holds it`);
    if (!REMOTE_KEYS.includes(k)) bad(`"remote" takes ${REMOTE_KEYS.map((x) => `"${x}"`).join(', ')}, not "${k.slice(0, 40)}"`);
  }
  if (typeof o.url !== 'string' || o.url.length > 2048 || !/^(s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^\0\\]*)?|file:\/\/\/[^\0]*)$/.test(o.url)) {
    bad('"remote.url" must be s3://BUCKET[/PREFIX] or file:///FOLDER (credentials never go in it)');
  }
  if (o.endpoint !== undefined) {
    let u: URL | undefined;
    try {
      u = typeof o.endpoint === 'string' && o.endpoint.length <= 2048 ? new URL(o.endpoint) : undefined;
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password) bad('"remote.endpoint" must be an http(s):// URL without credentials');
  }
  const out: RemoteConfig = { url: o.url as string, ...(o.endpoint !== undefined ? { endpoint: o.endpoint as string } : {}) };
  if (o.keyFile !== undefined) {
    if (typeof o.keyFile !== 'string' || o.keyFile === '' || o.keyFile.length > 4096 || o.keyFile.includes('\0')) bad('"remote.keyFile" must be the path of a key file');
    out.keyFile = resolve(o.keyFile as string);
  }
  if (o.passphraseEnv !== undefined) {
    if (typeof o.passphraseEnv !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(o.passphraseEnv))
      bad('"remote.passphraseEnv" must be the name of an environment variable (the passphrase itself never goes in the file)');
    out.passphraseEnv = o.passphraseEnv as string;
  }
  if (out.keyFile !== undefined && out.passphraseEnv !== undefined) bad('"remote" sets both "keyFile" and "passphraseEnv"; a remote has one key');
  for (const k of ['keep', 'keepDaily', 'keepWeekly', 'keepMonthly'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'number' || !Number.isInteger(o[k]) || (o[k] as number) < 0 || (o[k] as number) > 1_000_000) bad(`"remote.${k}" must be a whole number`);
    out[k] = o[k] as number;
  }
  return out;
}

export function parseAltSource(text: string, resolve: (p: string) => string, bad: (why: string) => never): { repo: string; blobs?: string } | undefined {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (lines.length === 0) return undefined;
  if (lines.length > 1) bad('holds more than one line; only one alternative source (the main storage) is supported, as in the recipe');
  const parts = lines[0]!.split(/\s+/);
  if (parts.length < 2 || parts.length > 3) bad(`"${lines[0]}" is not "STORAGE FILESTORAGE_BACKUPS [BLOB_BACKUPS]"`);
  if (parts[0] !== '1' && parts[0] !== 'main') bad(`names storage "${parts[0]}"; only the main storage (1) is supported`);
  return { repo: resolve(parts[1]!), blobs: parts[2] === undefined ? undefined : resolve(parts[2]) };
}

/** Folders never looked into when searching a workspace for deployments. */
const SKIP_DIRS = new Set([
  'node_modules',
  'bower_components',
  '__pycache__',
  'venv',
  'env',
  'eggs',
  'develop-eggs',
  'parts',
  'dist',
  'build',
  'out',
  'lib',
  'lib64',
  'include',
  'share',
  'site-packages',
  'blobstorage',
  'filestorage',
]);

/** What makes a folder a deployment: a file discoverDeployment starts from. */
const MARKERS = ['buildout.cfg', CONFIG_FILE, path.join('var', 'filestorage', 'Data.fs'), path.join('filestorage', 'Data.fs'), 'zope.conf', path.join('etc', 'zope.conf')];

/**
 * The folders below `root` (not `root` itself) that hold a deployment, nearest
 * first, at most `depth` levels down: a cookieplone project keeps its site in
 * backend/instance/, a monorepo may hold several. Hidden folders, virtualenvs,
 * node_modules and build output are skipped, links never followed, and the
 * walk stops after `maxDirs` folders (a workspace may be huge).
 */
export async function findDeployments(root: string, opts: { depth?: number; maxDirs?: number; signal?: AbortSignal } = {}): Promise<string[]> {
  const depth = opts.depth ?? 3;
  let budget = opts.maxDirs ?? 2000;
  const found: string[] = [];
  let level = [path.resolve(root)];
  for (let d = 1; d <= depth && level.length && budget > 0; d++) {
    const next: string[] = [];
    for (const dir of level) {
      if (opts.signal?.aborted || budget <= 0) break;
      const ents = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of ents) {
        if (!e.isDirectory() || e.name.startsWith('.') || SKIP_DIRS.has(e.name)) continue;
        if (--budget <= 0) break;
        const sub = path.join(dir, e.name);
        let marked = false;
        for (const m of MARKERS)
          if (
            await fsp.lstat(path.join(sub, m)).then(
              (st) => st.isFile(),
              () => false,
            )
          )
            marked = true;
        // A deployment's own subfolders (var/, etc/) are part of it, not deployments of their own.
        if (marked) found.push(sub);
        else next.push(sub);
      }
    }
    level = next;
  }
  return found;
}
