// The Remote section and its commands (issue 12) in the real extension host,
// against a real S3 server (Ceph RGW, started here: test/support/s3.ts): the
// section lists the remote's generations only when expanded; Push Now sends
// the generations the remote lacks; Restore from Remote… restores an empty
// site and, incrementally, one holding an older state, to the pushed bytes;
// the credentials stored by Set Remote Credentials… (SecretStorage) are the
// ones used (the host's environment holds none); an untrusted workspace
// neither lists, pushes nor restores.
//
// The workspace folder is the other suites' too: this suite names the
// database with ploneBackup.file / blobDir (so that an empty var/ is still a
// deployment, a dev site to fill) and the remote with ploneBackup.remote.*,
// and removes every setting and its var/ when it ends.
import * as assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import {
  SampleSite,
  backupDeployment,
  discoverDeployment,
  readRuns,
  remoteCacheDir,
  runLogPath,
  type PushResult,
  type S3Target,
  type StorageRestoreResult,
} from '../../../src/engine/internal';
import { openRemote } from '../../../src/extension/remote';
import { fakeClock } from '../../support/fixtures';
import { Command } from '../../../src/extension/commands';
import type { PloneBackupApi } from '../../../src/extension/extension';
import type { Node } from '../../../src/extension/tree';
import type { Confirmation } from '../../../src/extension/safety';
import { startS3, type S3Instance } from '../../support/s3';
import { done, exec, EXTENSION_ID, holdSiteLock, testWorkspace, waitFor, type HeldLock, type TestWorkspace } from './host';

const md5 = (file: string) => createHash('md5').update(fs.readFileSync(file)).digest('hex');

/** The blob files below a blobstorage, { relative path: md5 } (no .layout, no tmp/). */
function blobs(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.blob')) out[path.relative(dir, p)] = md5(p);
    }
  };
  walk(dir);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

interface Point {
  stamp: string;
  dataFs: string;
  blobs: Record<string, string>;
}

/** The environment a run could take credentials from: none here, so that only the stored ones can work. */
const AWS_VARS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_CONFIG_FILE', 'AWS_EC2_METADATA_DISABLED'];

suite('The Remote section: Push Now, Restore from Remote…, credentials (real S3 server)', function () {
  this.timeout(120_000);
  let api: PloneBackupApi;
  let s3: S3Instance;
  let ws: string;
  let var_: string;
  let dataFs: string;
  let blobDir: string;
  let w: TestWorkspace;
  /** A home for the AWS files that must not exist (no ~/.aws of this machine). */
  let noAws: string;
  let url = '';
  let running: HeldLock | undefined;
  const savedEnv: Record<string, string | undefined> = {};

  const config = () => vscode.workspace.getConfiguration('ploneBackup');
  const set = async (key: string, value: unknown) => config().update(key, value, vscode.ConfigurationTarget.Workspace);
  const entry = () => api.model.deployments.find((e) => e.root === ws)!;
  const remoteNode = () => api.tree.findRemote(ws);
  /** The remote the section shows. */
  const shownRemote = () => remoteNode()!.remote;
  const label = (n: Node) => String(api.tree.getTreeItem(n).label);
  const desc = (n: Node) => String(api.tree.getTreeItem(n).description ?? '');

  /** The section's rows, as a person expanding it sees them once loaded. */
  async function expand(): Promise<Node[]> {
    const node = remoteNode();
    assert.ok(node, 'there is no Remote section');
    let rows: Node[] = [];
    await waitFor(
      () => {
        rows = api.tree.getChildren(remoteNode()!);
        return !(rows.length === 1 && label(rows[0]!) === 'Loading…');
      },
      'the remote to be listed',
      60_000,
    );
    return rows;
  }

  const stamps = (rows: Node[]) => rows.filter((n) => n.type === 'remoteGeneration').map((n) => (n as Extract<Node, { type: 'remoteGeneration' }>).gen.stamp);

  async function refresh(): Promise<void> {
    done(await exec(Command.refresh), 'refresh');
  }

  /** A fresh, empty bucket as the remote (the setting), and nothing listed yet. */
  async function freshRemote(): Promise<void> {
    url = await s3.bucket('sites/dev');
    await set('remote.url', url);
    await refresh();
  }

  async function storeCredentials(): Promise<void> {
    done(await exec(Command.setRemoteCredentials, { folder: ws, accessKeyId: s3.env.accessKey, secretAccessKey: s3.env.secretKey }), 'set credentials');
  }

  /** An empty dev site (TestWorkspace.fresh: var/ moved aside, refreshed). */
  const emptySite = () => w.fresh({ empty: true });
  const commit = (fn: (s: SampleSite) => Promise<unknown>) => w.commit(fn);

  /** Back Up Now, and the state it saved. */
  async function backUp(command: string = Command.backup): Promise<Point> {
    const [r] = done(await exec<{ filestorage: { stamp: string } }[]>(command), command);
    return { stamp: r!.filestorage.stamp, dataFs: md5(dataFs), blobs: blobs(blobDir) };
  }

  /** A site with a full backup and two incrementals (new blob files in each), pushed to a fresh remote. */
  async function pushedHistory(): Promise<Point[]> {
    await emptySite();
    await freshRemote();
    await storeCredentials();
    const points: Point[] = [];
    await commit(async (s) => {
      await s.addDocument('Front page');
      await s.uploadFile('report.pdf', randomBytes(3000));
    });
    points.push(await backUp(Command.fullBackup));
    await commit((s) => s.uploadFile('logo.png', randomBytes(2000)));
    points.push(await backUp());
    await commit(async (s) => {
      await s.addDocument('News');
      await s.uploadFile('minutes.pdf', randomBytes(5000));
    });
    points.push(await backUp());
    const pushed = done(await exec<PushResult>(Command.pushNow), 'push');
    assert.deepEqual(pushed.storages[0]!.pushed, points.map((p) => p.stamp).sort());
    return points;
  }

  async function remoteKeys(u: string): Promise<string[]> {
    const bucket = u.slice(5).split('/')[0]!;
    const r = await s3.admin.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (r.Contents ?? []).map((o) => o.Key!).sort();
  }

  suiteSetup(async function () {
    this.timeout(400_000);
    w = await testWorkspace('remote', { empty: true });
    ({ ws, dataFs, blobDir, api } = w);
    var_ = w.varDir;
    noAws = fs.mkdtempSync(path.join(os.tmpdir(), 'plone-backup-no-aws-'));
    for (const k of AWS_VARS) savedEnv[k] = process.env[k];
    for (const k of AWS_VARS) delete process.env[k];
    // No ~/.aws of this machine, no instance metadata: without stored credentials a run has none.
    process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(noAws, 'no-credentials');
    process.env.AWS_CONFIG_FILE = path.join(noAws, 'no-config');
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    assert.ok(api?.remote, 'activate() does not return the remote actions');
    s3 = await startS3();
    // The database by its paths, so that an empty var/ is a dev site to restore into.
    await set('file', 'var/filestorage/Data.fs');
    await set('blobDir', 'var/blobstorage');
    await set('remote.endpoint', s3.env.endpoint);
  });

  suiteTeardown(async function () {
    this.timeout(180_000);
    await running?.release();
    if (api) {
      api.remote.trust.override = undefined;
      api.hooks.confirm = undefined;
      await exec(Command.forgetRemoteCredentials, { folder: ws }).catch(() => undefined);
    }
    for (const k of ['remote.url', 'remote.endpoint', 'file', 'blobDir']) await set(k, undefined);
    for (const k of AWS_VARS) {
      if (savedEnv[k] === undefined) delete process.env[k];
      else process.env[k] = savedEnv[k];
    }
    if (var_ && fs.existsSync(var_)) fs.rmSync(var_, { recursive: true, force: true });
    w?.dispose();
    if (noAws) fs.rmSync(noAws, { recursive: true, force: true });
    await exec(Command.refresh);
    await s3?.destroy();
  });

  test('no remote configured: no Remote section, and Push Now says how to configure one', async () => {
    await set('remote.url', undefined);
    await emptySite();
    await commit((s) => s.addDocument('Front page'));
    await backUp();
    assert.equal(remoteNode(), undefined);
    const r = await exec(Command.pushNow);
    assert.equal(r.status, 'failed');
    assert.match((r as { message: string }).message, /No remote is configured/);
  });

  test('credentials: none is one row saying what to do; the stored ones (SecretStorage) are used; the AWS environment works without them', async () => {
    await emptySite();
    await commit((s) => s.addDocument('Front page'));
    await backUp();
    await freshRemote();
    done(await exec(Command.forgetRemoteCredentials, { folder: ws }), 'forget');
    // Lazily: nothing is fetched until the section is expanded.
    const node = remoteNode()!;
    assert.ok(node, 'the Remote section is there');
    assert.equal(label(node), 'Remote');
    assert.match(desc(node), new RegExp(url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
    assert.equal(api.remote.listings.peek(entry(), shownRemote()), undefined, 'listed before it was expanded');
    let rows = await expand();
    assert.equal(rows.length, 1, 'one row');
    assert.match(label(rows[0]!), /^No credentials for this remote .*: Set Remote Credentials…$/);
    assert.equal(api.tree.getTreeItem(rows[0]!).command?.command, Command.setRemoteCredentials);
    // Stored in SecretStorage, never in the settings.
    await storeCredentials();
    rows = await expand();
    assert.deepEqual(rows.map(label), ['Nothing pushed yet: Push Now']);
    const settings = path.join(ws, '.vscode', 'settings.json');
    assert.ok(!fs.readFileSync(settings, 'utf8').includes(s3.env.secretKey), 'the secret is in settings.json');
    assert.ok(!fs.readFileSync(settings, 'utf8').includes(s3.env.accessKey), 'the access key is in settings.json');
    // Wrong stored credentials: refused, and the row says so.
    done(await exec(Command.setRemoteCredentials, { folder: ws, accessKeyId: s3.env.accessKey, secretAccessKey: 'not-the-secret' }), 'set wrong credentials');
    rows = await expand();
    assert.match(label(rows[0]!), /No access with these credentials/);
    const refused = await exec(Command.pushNow);
    assert.equal(refused.status, 'failed');
    assert.equal((refused as { code: string }).code, 'REMOTE_FAILED');
    // None stored: the SDK's default chain, as the CLI (here the environment).
    done(await exec(Command.forgetRemoteCredentials, { folder: ws }), 'forget');
    process.env.AWS_ACCESS_KEY_ID = s3.env.accessKey;
    process.env.AWS_SECRET_ACCESS_KEY = s3.env.secretKey;
    try {
      done(await exec(Command.refreshRemote, { folder: ws }), 'refresh remote');
      rows = await expand();
      assert.deepEqual(rows.map(label), ['Nothing pushed yet: Push Now']);
    } finally {
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
    }
  });

  test('an unreachable server is one row saying to check the endpoint; Push Now fails with the same advice', async () => {
    await emptySite();
    await commit((s) => s.addDocument('Front page'));
    await backUp();
    await freshRemote();
    await storeCredentials();
    // Nothing listens on port 9 of this host. (Credentials are stored per URL and endpoint: these are for that endpoint.)
    await set('remote.endpoint', 'http://127.0.0.1:9');
    try {
      await refresh();
      await storeCredentials();
      const rows = await expand();
      assert.equal(rows.length, 1);
      assert.match(label(rows[0]!), /cannot be reached: check ploneBackup\.remote\.endpoint/);
      const r = await exec(Command.pushNow);
      assert.equal(r.status, 'failed');
      assert.equal((r as { code: string }).code, 'REMOTE_FAILED');
      // The failed push is a run naming its remote, as a successful one does.
      const run = (await readRuns(runLogPath(entry().dep!))).records.filter((x) => x.command === 'push').at(-1);
      assert.deepEqual([run?.outcome, run?.remote], ['failed', url]);
    } finally {
      await exec(Command.forgetRemoteCredentials, { folder: ws });
      await set('remote.endpoint', s3.env.endpoint);
      await refresh();
    }
  });

  test('Push Now and Restore from Remote… cancelled by their signal do nothing', async () => {
    await emptySite();
    await freshRemote();
    await storeCredentials();
    await commit((s) => s.addDocument('Front page'));
    const a = await backUp();
    const push = await exec(Command.pushNow, { signal: AbortSignal.abort() });
    assert.equal(push.status, 'cancelled');
    assert.deepEqual(await remoteKeys(url), [], 'a cancelled push sent something');
    done(await exec<PushResult>(Command.pushNow), 'push');
    await emptySite();
    const restore = await exec(Command.restoreFromRemote, { folder: ws, stamp: a.stamp, yes: true, signal: AbortSignal.abort() });
    assert.equal(restore.status, 'cancelled');
    assert.ok(!fs.existsSync(dataFs), 'a cancelled restore made a Data.fs');
  });

  test('Push Now sends every generation; the section lists them; again after a backup, only the new one', async () => {
    await emptySite();
    await freshRemote();
    await storeCredentials();
    await commit((s) => s.addDocument('Front page'));
    const a = await backUp(Command.fullBackup);
    await commit((s) => s.uploadFile('report.pdf', randomBytes(3000)));
    const b = await backUp();
    const first = done(await exec<PushResult>(Command.pushNow), 'push');
    assert.deepEqual(first.storages[0]!.pushed, [a.stamp, b.stamp].sort());
    // A push from the editor is a run, as the CLI's: in the run log, with its remote.
    const runs = await readRuns(runLogPath(await discoverDeployment(ws)));
    const run = runs.records.filter((r) => r.command === 'push').at(-1);
    assert.ok(run, `no push in the run log: ${runs.records.map((r) => r.command).join(', ')}`);
    assert.equal(run.outcome, 'ok');
    assert.equal(run.via, 'extension');
    assert.equal(run.remote, first.url);
    assert.deepEqual(stamps(await expand()), [b.stamp, a.stamp], 'newest first');
    const keys = await remoteKeys(url);
    assert.ok(
      keys.some((k) => k.endsWith(`main/generations/${b.stamp}.json`)),
      `no manifest of ${b.stamp} in ${keys.join(', ')}`,
    );
    await commit((s) => s.uploadFile('logo.png', randomBytes(2000)));
    const c = await backUp();
    const second = done(await exec<PushResult>(Command.pushNow), 'push again');
    assert.deepEqual(second.storages[0]!.pushed, [c.stamp]);
    assert.equal(second.storages[0]!.present, 2);
    const rows = await expand();
    assert.deepEqual(stamps(rows), [c.stamp, b.stamp, a.stamp]);
    assert.match(desc(rows[0]!), /incremental/);
    assert.match(desc(rows.at(-1)!), /full/);
    const third = done(await exec<PushResult>(Command.pushNow), 'push a third time');
    assert.deepEqual(third.storages[0]!.pushed, []);
  });

  test('an encrypted remote: the stored passphrase encrypts the push; without it or with a wrong one the row asks for it; with it the restore works', async () => {
    await emptySite();
    await freshRemote();
    const creds = (passphrase?: string) =>
      exec(Command.setRemoteCredentials, { folder: ws, accessKeyId: s3.env.accessKey, secretAccessKey: s3.env.secretKey, ...(passphrase ? { passphrase } : {}) });
    done(await creds('correct horse battery'), 'credentials with a passphrase');
    await commit(async (s) => {
      await s.addDocument('Front page');
      await s.uploadFile('salaries.pdf', randomBytes(4000));
    });
    const a = await backUp(Command.fullBackup);
    assert.deepEqual(done(await exec<PushResult>(Command.pushNow), 'encrypted push').storages[0]!.pushed, [a.stamp]);
    const keys = await remoteKeys(url);
    assert.ok(
      keys.some((k) => k.endsWith('/plone-backup-encryption.json')),
      `no encryption marker in ${keys.join(', ')}`,
    );
    assert.ok(!keys.some((k) => k.endsWith('.blob')), `blob names are not hidden: ${keys.join(', ')}`);
    assert.deepEqual(stamps(await expand()), [a.stamp]);
    // Without the passphrase, then with a wrong one: one row asking for the key; a restore refused before anything is fetched.
    for (const pass of [undefined, 'wrong horse']) {
      done(await creds(pass), `credentials with ${pass ?? 'no'} passphrase`);
      const rows = await expand();
      assert.equal(rows.length, 1);
      assert.match(label(rows[0]!), /encrypted and the key is missing or wrong: Set Remote Credentials…/);
      const r = await exec(Command.restoreFromRemote, { folder: ws, stamp: a.stamp, yes: true });
      assert.equal(r.status, 'failed');
      assert.equal((r as { code: string }).code, 'REMOTE_KEY');
    }
    done(await creds('correct horse battery'), 'the right passphrase');
    await emptySite();
    done(await exec(Command.restoreFromRemote, { folder: ws, stamp: a.stamp, yes: true }), 'restore from the encrypted remote');
    assert.equal(md5(dataFs), a.dataFs);
    assert.deepEqual(blobs(blobDir), a.blobs);
  });

  test('Restore from Remote… into an empty site: the pushed Data.fs bytes and blob files', async () => {
    const points = await pushedHistory();
    const newest = points.at(-1)!;
    await emptySite();
    assert.ok(!fs.existsSync(dataFs));
    // The empty site shows its Remote section (the welcome view would hide it).
    assert.ok(remoteNode(), 'no Remote section on an empty site');
    assert.deepEqual(stamps(await expand()), points.map((p) => p.stamp).reverse());
    let asked: Confirmation | undefined;
    api.hooks.confirm = (q) => ((asked = q), true);
    try {
      const res = done(await exec<StorageRestoreResult[]>(Command.restoreFromRemote, { folder: ws, stamp: newest.stamp }), 'restore from remote');
      assert.equal(res[0]!.mode, 'full');
    } finally {
      api.hooks.confirm = undefined;
    }
    // The same modal confirmation as the local restore, naming the remote.
    assert.equal(asked?.kind, 'restore');
    assert.equal(asked?.action, 'Restore');
    assert.ok(asked?.message.includes(url), asked?.message);
    assert.equal(md5(dataFs), newest.dataFs);
    assert.deepEqual(blobs(blobDir), newest.blobs);
  });

  test('Restore from Remote… into a site holding an older state: incremental, refused while the site runs, declined changes nothing', async () => {
    const points = await pushedHistory();
    const [first, , newest] = points as [Point, Point, Point];
    await emptySite();
    done(await exec(Command.restoreFromRemote, { folder: ws, stamp: first.stamp, yes: true, keepOld: false }), 'restore the oldest');
    assert.equal(md5(dataFs), first.dataFs);
    assert.deepEqual(blobs(blobDir), first.blobs);
    // Declined at the modal: nothing changes.
    api.hooks.confirm = () => false;
    try {
      const r = await exec(Command.restoreFromRemote, { folder: ws, stamp: newest.stamp });
      assert.equal(r.status, 'declined');
    } finally {
      api.hooks.confirm = undefined;
    }
    assert.equal(md5(dataFs), first.dataFs);
    // The site must be stopped: its lock held, the restore is refused before anything is replaced,
    // and before anything is fetched (the cache emptied first: the declined restore fetched what it needed).
    const cache = path.join(remoteCacheDir(entry().dep!.storages[0]!, url), 'backups');
    fs.rmSync(path.dirname(path.dirname(cache)), { recursive: true, force: true });
    running = await holdSiteLock(dataFs);
    const refused = await exec(Command.restoreFromRemote, { folder: ws, stamp: newest.stamp, yes: true });
    await running.release();
    assert.equal(refused.status, 'failed');
    assert.equal((refused as { code: string }).code, 'SITE_RUNNING');
    assert.equal(md5(dataFs), first.dataFs);
    const cached = fs.existsSync(cache) ? fs.readdirSync(cache).filter((n) => /^\d{4}-/.test(n)) : [];
    assert.deepEqual(cached, [], 'fetched for a running site');
    // Now the newest: only the missing pieces are appended and the missing blob files added.
    const res = done(await exec<StorageRestoreResult[]>(Command.restoreFromRemote, { folder: ws, stamp: newest.stamp, yes: true, keepOld: false }), 'restore the newest');
    assert.equal(res[0]!.mode, 'incremental');
    assert.equal(md5(dataFs), newest.dataFs);
    assert.deepEqual(blobs(blobDir), newest.blobs);
    assert.equal(res[0]!.blobFilesAdded, Object.keys(newest.blobs).length - Object.keys(first.blobs).length);
  });

  test('snapshots and zip backups: the section groups the kinds as the local view does; Restore from Remote… restores a snapshot and a zip backup', async () => {
    await emptySite();
    await freshRemote();
    await storeCredentials();
    await commit(async (s) => {
      await s.addDocument('Front page');
      await s.uploadFile('report.pdf', randomBytes(3000));
    });
    const full = await backUp(Command.fullBackup);
    await commit((s) => s.uploadFile('logo.png', randomBytes(2000)));
    const snap = await backUp(Command.snapshot);
    await commit((s) => s.addDocument('After the snapshot'));
    const zip = await backUp(Command.zipBackup);
    const pushed = done(await exec<PushResult>(Command.pushNow), 'push');
    assert.deepEqual(
      pushed.storages.map((x) => [x.storage, x.pushed]),
      [
        ['main', [full.stamp]],
        ['main/snapshot', [snap.stamp]],
        ['main/zip', [zip.stamp]],
      ],
    );
    type Group = Extract<Node, { type: 'remoteGroup' }>;
    const groups = async () => (await expand()) as Group[];
    let rows = await groups();
    assert.deepEqual(rows.map(label), ['Backups', 'Snapshots', 'Zip backups']);
    assert.deepEqual(
      rows.map((g) => g.type),
      ['remoteGroup', 'remoteGroup', 'remoteGroup'],
    );
    assert.deepEqual(
      rows.map((g) => stamps(api.tree.getChildren(g))),
      [[full.stamp], [snap.stamp], [zip.stamp]],
    );
    const snapNode = api.tree.getChildren(rows[1]!)[0]!;
    assert.match(String((api.tree.getTreeItem(snapNode).tooltip as vscode.MarkdownString).value), /Full snapshot of main/);
    assert.equal(api.tree.getParent(snapNode)?.type, 'remoteGroup', 'reveal finds the group of a snapshot');
    // Restore from Remote… on the snapshot's row, into an empty site: the snapshot's state.
    await emptySite();
    rows = await groups();
    api.hooks.confirm = () => true;
    try {
      const res = done(await exec<StorageRestoreResult[]>(Command.restoreFromRemote, api.tree.getChildren(rows[1]!)[0]!), 'restore the snapshot');
      assert.equal(res[0]!.stamp, snap.stamp);
    } finally {
      api.hooks.confirm = undefined;
    }
    assert.equal(md5(dataFs), snap.dataFs);
    assert.deepEqual(blobs(blobDir), snap.blobs);
    // A zip backup, by its arguments.
    done(await exec(Command.restoreFromRemote, { folder: ws, kind: 'zip', stamp: zip.stamp, yes: true, keepOld: false }), 'restore the zip backup');
    assert.equal(md5(dataFs), zip.dataFs);
    assert.deepEqual(blobs(blobDir), zip.blobs);
  });

  test('the section reads only the generations it shows (the newest 50) and says how many more there are', async function () {
    this.timeout(300_000);
    await emptySite();
    await freshRemote();
    await storeCredentials();
    const dep = entry().dep!;
    const clock = fakeClock('2026-02-01-10-00-00', 60);
    const made: string[] = [];
    for (let i = 0; i < 53; i++) {
      await commit((s) => s.addDocument(`Page ${i}`));
      // One chain: retention (keep 2 chains) would take older fulls' generations.
      const [r] = await backupDeployment(dep, i === 0 ? 'fullbackup' : 'backup', { now: clock.now });
      made.push(r!.filestorage.stamp!);
    }
    done(await exec(Command.refresh), 'refresh');
    assert.equal(done(await exec<PushResult>(Command.pushNow), 'push').storages[0]!.pushed.length, 53);
    const rows = await expand();
    assert.deepEqual(stamps(rows), made.slice(-50).reverse());
    assert.equal(label(rows.at(-1)!), '… and 3 older generations');
    const listing = api.remote.listings.peek(entry(), shownRemote());
    assert.equal(listing?.state, 'done');
    const main = listing?.state === 'done' ? listing.views.find((v) => v.storage === 'main') : undefined;
    assert.deepEqual([main?.generations.length, main?.older], [50, 3], 'more manifests were read than the section shows');
    assert.match(desc(remoteNode()!), /53 generations/);
    // A click on that row (its command, with its arguments): every manifest read, every generation shown.
    const click = api.tree.getTreeItem(rows.at(-1)!).command;
    assert.equal(click?.command, Command.showOlderRemote);
    done(await vscode.commands.executeCommand(click!.command, ...(click!.arguments ?? [])), 'show older');
    const all = await expand();
    assert.deepEqual(stamps(all), [...made].reverse());
    assert.ok(!all.some((n) => /older/.test(label(n))), 'no row of older ones is left');
    const again = api.remote.listings.peek(entry(), shownRemote());
    assert.deepEqual(again?.state === 'done' ? (again.views.find((v) => v.storage === 'main')?.older ?? 0) : 'not done', 0);
  });

  test('temporary credentials: Set Remote Credentials… stores a session token with the key, and the runs hand it to the SDK', async () => {
    await emptySite();
    await commit((s) => s.addDocument('Front page'));
    await backUp();
    await freshRemote();
    done(
      await exec(Command.setRemoteCredentials, { folder: ws, accessKeyId: s3.env.accessKey, secretAccessKey: s3.env.secretKey, sessionToken: 'sts-session-token' }),
      'set temporary credentials',
    );
    const stored = await api.remote.listings.secrets.get(shownRemote());
    assert.equal(stored?.sessionToken, 'sts-session-token');
    assert.ok(!fs.readFileSync(path.join(ws, '.vscode', 'settings.json'), 'utf8').includes('sts-session-token'), 'the token is in settings.json');
    // What a run opens: the SDK's client holds the token (RGW without STS takes any, so the push goes through).
    const t = await openRemote(entry(), shownRemote(), stored);
    try {
      const c = await (t as S3Target).client.config.credentials();
      assert.deepEqual([c.accessKeyId, c.sessionToken], [s3.env.accessKey, 'sts-session-token']);
    } finally {
      t.close();
    }
    done(await exec<PushResult>(Command.pushNow), 'push with temporary credentials');
    await expand();
    assert.match(String(api.tree.getTreeItem(remoteNode()!).tooltip), /temporary access key .* with its session token/);
    // A token without its key is refused, and what was stored stays.
    const refused = await exec(Command.setRemoteCredentials, { folder: ws, sessionToken: 'lonely-token' });
    assert.equal(refused.status, 'failed');
    assert.equal((await api.remote.listings.secrets.get(shownRemote()))?.sessionToken, 'sts-session-token');
  });

  test('an untrusted workspace: the section says so and lists nothing; Push Now and Restore from Remote… refuse, nothing sent', async () => {
    await pushedHistory();
    await commit((s) => s.addDocument('Not pushed'));
    await backUp();
    const before = await remoteKeys(url);
    const md5Before = md5(dataFs);
    // The workspace's own plone-backup.json names the remote; the workspace is not trusted.
    const config = path.join(ws, 'plone-backup.json');
    fs.writeFileSync(config, JSON.stringify({ remote: { url, endpoint: s3.env.endpoint } }));
    await set('remote.url', undefined);
    api.remote.trust.override = false;
    try {
      await refresh();
      const rows = api.tree.getChildren(remoteNode()!);
      assert.equal(rows.length, 1);
      assert.match(label(rows[0]!), /Restricted Mode/);
      assert.equal(api.remote.listings.peek(entry(), shownRemote()), undefined, 'listed while untrusted');
      // The settings are restricted: a workspace's ploneBackup.remote.url is not taken.
      await set('remote.url', url.replace('/sites/dev', '/other'));
      await refresh();
      assert.equal(shownRemote().url, url, 'the workspace setting was taken while untrusted');
      const push = await exec(Command.pushNow);
      assert.equal(push.status, 'failed');
      assert.match((push as { message: string }).message, /not trusted/);
      const restore = await exec(Command.restoreFromRemote, { folder: ws, yes: true });
      assert.equal(restore.status, 'failed');
      assert.match((restore as { message: string }).message, /not trusted/);
      const creds = await exec(Command.setRemoteCredentials, { folder: ws, accessKeyId: 'x', secretAccessKey: 'y' });
      assert.equal(creds.status, 'failed');
    } finally {
      api.remote.trust.override = undefined;
      fs.rmSync(config, { force: true });
      await set('remote.url', url);
      await refresh();
    }
    assert.deepEqual(await remoteKeys(url), before);
    assert.equal(md5(dataFs), md5Before);
  });

  test('package.json: the remote settings are restricted in untrusted workspaces; what sends or restores is offered only when trusted', () => {
    const pkg = vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON;
    const restricted: string[] = pkg.capabilities.untrustedWorkspaces.restrictedConfigurations;
    for (const k of ['ploneBackup.remote.url', 'ploneBackup.remote.endpoint']) {
      assert.ok(restricted.includes(k), `${k} is not restricted`);
      assert.ok(pkg.contributes.configuration.properties[k]?.markdownDescription, `${k} has no description`);
    }
    const writes: string[] = [Command.pushNow, Command.restoreFromRemote, Command.setRemoteCredentials];
    for (const [where, items] of Object.entries(pkg.contributes.menus as Record<string, { command: string; when?: string }[]>)) {
      for (const m of items) if (writes.includes(m.command)) assert.match(m.when ?? '', /\bisWorkspaceTrusted\b/, `${where}: ${m.command} shows when untrusted`);
    }
  });
});
