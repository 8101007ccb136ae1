/**
 * Both directions against the real collective.recipe.backup (the oracles'
 * recipe_real.py: its own backup, snapshot, zip and restore functions with the
 * real repozo, as its generated scripts run them), on real ZODB data made
 * during the test (the oracles' zodb_writer.py: documents with blobs added,
 * replaced and deleted; a pack between backups in some cases), for every blob
 * format the recipe writes: folders, archive_blob (.tar), with compress_blob
 * (.tar.gz), incremental_blobs (.tar + .snar, then .delta.tar), the same
 * compressed, snapshots and zip.
 *
 * - the recipe's backups restored by us: in a buildout folder with only its
 *   buildout.cfg, every stamp that we restore gives the Data.fs bytes and the
 *   blob files that the recipe's own restore of that stamp gives (and what
 *   the site held when that backup was made);
 * - our backups restored by the recipe: plone-backup (the engine, and the
 *   CLI bundle once per case) backs up the same kind of site from its
 *   buildout.cfg; the recipe's own restore of every stamp gives the Data.fs
 *   bytes and blob files that our restore gives, which are those the site
 *   held, exactly the files that state references.
 *
 * Needs the oracles (support/oracles.ts): skipped where they are missing,
 * failing in CI.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, discoverDeployment, restoreDeployment, type Kind } from '../../src/engine/internal';
import { referencedBlobs } from '../support/assert';
import { blobContents, md5File, tmpDir, type TestHooks } from '../support/fs';
import { oracleSkip, runRecipe, runZodbWriter, type RecipeAction } from '../support/oracles';
import { CLI } from '../support/paths';
import { runCli } from '../support/processes';

interface Format {
  /** What a failure names. */
  name: string;
  kind: Kind;
  part: string;
  /** The part's options (buildout.cfg and the recipe's alike). */
  options: Record<string, string>;
  /** Backups made, with writes before each. */
  backups: number;
  /** Before which backup (0-based) the writer packs too. */
  packBefore?: number;
}

const FORMATS: Format[] = [
  { name: 'blob folders', kind: 'backup', part: 'backup', options: {}, backups: 3, packBefore: 2 },
  { name: 'archive_blob (.tar)', kind: 'backup', part: 'plonebackup', options: { archive_blob: 'true' }, backups: 3 },
  { name: 'archive_blob compress_blob (.tar.gz)', kind: 'backup', part: 'backup', options: { archive_blob: 'true', compress_blob: 'true' }, backups: 3, packBefore: 2 },
  { name: 'incremental_blobs (.tar .snar .delta.tar)', kind: 'backup', part: 'plonebackup', options: { archive_blob: 'true', incremental_blobs: 'true' }, backups: 3 },
  {
    name: 'incremental_blobs compress_blob (.tar.gz .delta.tar.gz)',
    kind: 'backup',
    part: 'backup',
    options: { archive_blob: 'true', incremental_blobs: 'true', compress_blob: 'true' },
    backups: 3,
    packBefore: 2,
  },
  { name: 'snapshot', kind: 'snapshot', part: 'plonebackup', options: {}, backups: 3, packBefore: 1 },
  { name: 'zip', kind: 'zip', part: 'backup', options: { enable_zipbackup: 'true' }, backups: 2, packBefore: 1 },
];

const RECIPE_BACKUP: Record<Kind, RecipeAction> = { backup: 'backup', snapshot: 'snapshot', zip: 'zip' };
const RECIPE_RESTORE: Record<Kind, RecipeAction> = { backup: 'restore', snapshot: 'snapshotrestore', zip: 'ziprestore' };
const OUR_COMMAND = { backup: 'backup', snapshot: 'snapshot', zip: 'zipbackup' } as const;
const CLI_COMMAND: Record<Kind, string> = { backup: 'backup', snapshot: 'snapshotbackup', zip: 'zipbackup' };

/** The filestorage backup folder of a kind, named as the recipe names it from the part (recipe_real.py). */
function repoFolder(site: string, part: string, kind: Kind): string {
  const name =
    part === 'backup'
      ? { backup: 'backups', snapshot: 'snapshotbackups', zip: 'zipbackups' }[kind]
      : { backup: `${part}s`, snapshot: `${part}-snapshots`, zip: `${part}-zips` }[kind];
  return path.join(site, 'var', name);
}

/** The blob backup folder of a kind, named as the recipe names it from the part (recipe_real.py). */
function blobFolder(site: string, part: string, kind: Kind): string {
  const name =
    part === 'backup'
      ? { backup: 'blobstoragebackups', snapshot: 'blobstoragesnapshots', zip: 'blobstoragezips' }[kind]
      : { backup: `${part}-blobstorages`, snapshot: `${part}-blobstoragesnapshots`, zip: `${part}-blobstoragezips` }[kind];
  return path.join(site, 'var', name);
}

/** The entries of a blob backup folder (folders with a slash), without `latest`. */
function blobEntries(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.name !== 'latest')
    .map((e) => (e.isDirectory() ? `${e.name}/` : e.name))
    .sort();
}

const PIECE = /^(\d{4}(?:-\d\d){5})\.(?:delta)?fsz?$/;

/** The stamps of the filestorage pieces in a backup folder. */
function stamps(repo: string): string[] {
  if (!fs.existsSync(repo)) return [];
  return fs
    .readdirSync(repo)
    .map((n) => PIECE.exec(n)?.[1])
    .filter((s): s is string => !!s)
    .sort();
}

/**
 * What the recipe keeps in the blob backup folder for the pieces in `repo`:
 * a folder per stamp, or an archive per stamp; with incremental_blobs a full
 * piece's .tar with its .snar and an incremental piece's .delta.tar. (Zip
 * backups are left out: the recipe names its one archive blobstorage.0.tar.)
 */
function expectedEntries(f: Format, repo: string): string[] {
  const gz = f.options.compress_blob === 'true' ? '.gz' : '';
  const archive = f.options.archive_blob === 'true';
  const incremental = archive && f.options.incremental_blobs === 'true' && f.kind === 'backup';
  const out: string[] = [];
  for (const n of fs.readdirSync(repo)) {
    const m = PIECE.exec(n);
    if (!m) continue;
    const stamp = m[1]!;
    if (!archive) out.push(`blobstorage.${stamp}/`);
    else if (!incremental) out.push(`blobstorage.${stamp}.tar${gz}`);
    else if (n.includes('.delta')) out.push(`blobstorage.${stamp}.delta.tar${gz}`);
    else out.push(`blobstorage.${stamp}.tar${gz}`, `blobstorage.${stamp}.snar`);
  }
  return out.sort();
}

function writeBuildout(site: string, f: Format): void {
  fs.mkdirSync(site, { recursive: true });
  const opts = Object.entries(f.options)
    .map(([k, v]) => `${k} = ${v}\n`)
    .join('');
  const text = `[buildout]\nparts =\n    instance\n    ${f.part}\n\n[instance]\nrecipe = plone.recipe.zope2instance\nuser = admin:admin\n\n[${f.part}]\nrecipe = collective.recipe.backup\n${opts}`;
  fs.writeFileSync(path.join(site, 'buildout.cfg'), text);
}

interface State {
  datafs: string;
  size: number;
  blobs: Record<string, string>;
  layout?: string;
}

function state(site: string): State {
  const file = path.join(site, 'var', 'filestorage', 'Data.fs');
  const blobDir = path.join(site, 'var', 'blobstorage');
  const layout = path.join(blobDir, '.layout');
  return {
    datafs: md5File(file),
    size: fs.statSync(file).size,
    blobs: blobContents(blobDir),
    layout: fs.existsSync(layout) ? fs.readFileSync(layout, 'utf8') : undefined,
  };
}

/** A copy of the whole buildout folder (its backups included, links kept as they are). */
function copySite(site: string, dest: string): string {
  fs.cpSync(site, dest, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  return dest;
}

/** Waits until `ms` passed since `since`: the stamps of two backups need a second between them. */
async function spacedFrom(since: number, ms = 1100): Promise<void> {
  const wait = since + ms - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

/** Writes with the real ZODB before backup `i` (longer before the first; with a pack before `packBefore`). */
async function write(site: string, f: Format, i: number): Promise<string> {
  return runZodbWriter(site, i === 0 ? 1 : 0.6, f.packBefore === i ? 0.3 : Infinity);
}

/** The pack before backup `packBefore` removed blob files: deletions are part of what is compared. */
function assertPackDeleted(f: Format, live: Map<string, State>): void {
  if (f.packBefore === undefined) return;
  const order = [...live.keys()];
  const before = live.get(order[f.packBefore - 1]!)!;
  const after = live.get(order[f.packBefore]!)!;
  const gone = Object.keys(before.blobs).filter((k) => !(k in after.blobs));
  assert.ok(gone.length > 0, `${f.name}: the pack removed blob files between ${order[f.packBefore - 1]} and ${order[f.packBefore]}`);
}

/** Compares two restored states and the state the site had when the backup was made. */
function assertSame(what: string, recipe: State, ours: State, live: State | undefined): void {
  assert.ok(Object.keys(recipe.blobs).length > 0, `${what}: the recipe's restore has blob files`);
  assert.equal(ours.size, recipe.size, `${what}: Data.fs size, ours vs the recipe's restore`);
  assert.equal(ours.datafs, recipe.datafs, `${what}: Data.fs bytes, ours vs the recipe's restore`);
  assert.deepEqual(ours.blobs, recipe.blobs, `${what}: blob files (path -> md5), ours vs the recipe's restore`);
  // ZODB writes `bushy` and reads it stripped; our generations hold `bushy\n`.
  assert.equal(ours.layout?.trim(), recipe.layout?.trim(), `${what}: blobstorage/.layout, ours vs the recipe's restore`);
  if (live) {
    assert.equal(recipe.datafs, live.datafs, `${what}: Data.fs bytes, restored vs the site when it was backed up`);
    assert.deepEqual(recipe.blobs, live.blobs, `${what}: blob files, restored vs the site when it was backed up`);
  }
}

/** The recipe's restore and ours of `stamp`, each into its own copy of the buildout folder. */
async function restoreBoth(top: string, site: string, f: Format, stamp: string, tag: string): Promise<{ recipe: State; ours: State; recipeSite: string }> {
  const date = f.kind === 'zip' ? undefined : stamp;
  const r = copySite(site, path.join(top, `${tag}-recipe-${stamp}`));
  const u = copySite(site, path.join(top, `${tag}-ours-${stamp}`));
  const ourRestore = async () => restoreDeployment(await discoverDeployment(u), { kind: f.kind, date, keepOld: false });
  const [, [res]] = await Promise.all([runRecipe(RECIPE_RESTORE[f.kind], r, f.part, f.options, date), ourRestore()]);
  assert.equal(res!.stamp, stamp, `${f.name}: our restore of ${stamp} restored ${res!.stamp}`);
  const out = { recipe: state(r), ours: state(u), recipeSite: r };
  fs.rmSync(u, { recursive: true, force: true });
  return out;
}

/** The recipe's backups of a site written by the real ZODB; every stamp restored by both. */
async function recipeToUs(t: TestHooks, f: Format): Promise<void> {
  const top = tmpDir(t, 'pb-oracle-');
  const site = path.join(top, 'site');
  writeBuildout(site, f);
  const repo = repoFolder(site, f.part, f.kind);
  const live = new Map<string, State>();
  let last = 0;
  for (let i = 0; i < f.backups; i++) {
    await write(site, f, i);
    await spacedFrom(last);
    const before = new Set(stamps(repo));
    last = Date.now();
    await runRecipe(RECIPE_BACKUP[f.kind], site, f.part, f.options);
    const made = stamps(repo).filter((s) => !before.has(s));
    assert.equal(made.length, 1, `${f.name}: the recipe's backup ${i + 1} made one piece (${made.join(' ')})`);
    live.set(made[0]!, state(site));
  }
  assertPackDeleted(f, live);
  const kept = stamps(repo);
  assert.ok(kept.length >= (f.kind === 'zip' ? 1 : 2), `${f.name}: the recipe kept ${kept.join(' ')}`);
  // The premise: the recipe wrote the blob format this case is about.
  if (f.kind !== 'zip') assert.deepEqual(blobEntries(blobFolder(site, f.part, f.kind)), expectedEntries(f, repo), `${f.name}: the recipe's blob backups`);
  for (const stamp of kept) {
    const { recipe, ours, recipeSite } = await restoreBoth(top, site, f, stamp, 'a');
    fs.rmSync(recipeSite, { recursive: true, force: true });
    assertSame(`${f.name}, the recipe's backup ${stamp} restored by us`, recipe, ours, live.get(stamp));
  }
}

/** Our backups (engine and CLI) of a site written by the real ZODB; every stamp restored by the recipe and by us. */
async function usToRecipe(t: TestHooks, f: Format): Promise<void> {
  const top = tmpDir(t, 'pb-oracle-');
  const site = path.join(top, 'site');
  writeBuildout(site, f);
  const repo = repoFolder(site, f.part, f.kind);
  const live = new Map<string, State>();
  let last = 0;
  for (let i = 0; i < f.backups; i++) {
    await write(site, f, i);
    await spacedFrom(last);
    const before = new Set(stamps(repo));
    last = Date.now();
    if (i === 1) {
      // Once per case through the CLI bundle, as from a crontab in the buildout folder.
      assert.ok(fs.existsSync(CLI), `${CLI} is built by npm run build`);
      const r = runCli([CLI_COMMAND[f.kind], '-q'], { cwd: site });
      assert.equal(r.status, 0, `${f.name}: plone-backup ${CLI_COMMAND[f.kind]} -q: ${r.stderr}`);
      assert.equal(r.stdout, '', `${f.name}: -q prints nothing`);
    } else {
      const dep = await discoverDeployment(site);
      assert.equal(dep.part?.name, f.part);
      await backupDeployment(dep, OUR_COMMAND[f.kind]);
    }
    const made = stamps(repo).filter((s) => !before.has(s));
    assert.equal(made.length, 1, `${f.name}: our backup ${i + 1} made one piece in ${repo} (${made.join(' ')})`);
    live.set(made[0]!, state(site));
  }
  assertPackDeleted(f, live);
  const kept = stamps(repo);
  assert.ok(kept.length >= (f.kind === 'zip' ? 1 : 2), `${f.name}: we kept ${kept.join(' ')}`);
  for (const stamp of kept) {
    const { recipe, ours, recipeSite } = await restoreBoth(top, site, f, stamp, 'b');
    const what = `${f.name}, our backup ${stamp} restored by the recipe`;
    // Our restore is the reference here: the recipe's must give the same.
    assertSame(what, recipe, ours, live.get(stamp));
    const refs = await referencedBlobs(path.join(recipeSite, 'var', 'filestorage', 'Data.fs'));
    assert.deepEqual(Object.keys(recipe.blobs).sort(), refs, `${what}: exactly the blob files that state references`);
    fs.rmSync(recipeSite, { recursive: true, force: true });
  }
  // Written in the recipe's format, not only in one its restore can read.
  if (f.kind !== 'zip') assert.deepEqual(blobEntries(blobFolder(site, f.part, f.kind)), expectedEntries(f, repo), `${f.name}: our blob backups, named as the recipe names them`);
}

describe('the real collective.recipe.backup and plone-backup, each restoring the other', { concurrency: 2 }, () => {
  const skip = oracleSkip();
  for (const f of FORMATS) {
    it(`${f.name} [part ${f.part}]: the recipe's backups restored by plone-backup`, { skip, timeout: 120_000 }, (t) => recipeToUs(t, f));
    it(`${f.name} [part ${f.part}]: plone-backup's backups restored by the recipe`, { skip, timeout: 120_000 }, (t) => usToRecipe(t, f));
  }
});
