/**
 * `plone-backup demo`: the main job, on a sample deployment in a temp folder.
 *
 * A buildout-layout site (var/filestorage/Data.fs, var/blobstorage) is made;
 * a writer in another process (`plone-backup demo-writer DIR`, hidden) keeps
 * committing documents and file uploads, pausing between vote and finish
 * now and then; meanwhile backups run (a full one, incrementals, a
 * snapshot); then the writer stops and the demo runs check, a restore drill,
 * a restore to an earlier point in time and an incremental restore back to
 * the newest, and says what each did. The engine does the work; this only
 * orchestrates and prints.
 */

import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  PloneBackupError,
  backupDeployment,
  checkDeployment,
  discoverDeployment,
  drillDeployment,
  restoreDeployment,
  type BackupCommand,
  type StorageBackupResult,
} from '../engine';
import { SampleSite, writeContinuously, type WriteStats } from '../engine';
import { type CliIo, selfInvocation } from './io';
import { blobSummary, humanBytes } from '../engine';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sitePaths(root: string) {
  return { file: path.join(root, 'var', 'filestorage', 'Data.fs'), blobDir: path.join(root, 'var', 'blobstorage') };
}

/** The hidden writer: opens the sample site under DIR and writes until stdin closes (or SIGTERM). */
export async function demoWriterMain(argv: string[], io: CliIo): Promise<number> {
  if (argv.length !== 1) throw new PloneBackupError('USAGE', 'demo-writer takes one folder.');
  const site = await SampleSite.open(sitePaths(argv[0]!));
  const stop = new AbortController();
  io.signal?.addEventListener('abort', () => stop.abort());
  const stdin = io.stdin as (NodeJS.ReadableStream & { resume(): void }) | undefined;
  stdin?.on('end', () => stop.abort());
  stdin?.on('error', () => stop.abort());
  stdin?.resume();
  io.stdout.write('ready\n');
  const stats = await writeContinuously(site, { signal: stop.signal, seed: process.pid });
  await site.close({ writeIndex: true });
  io.stdout.write(JSON.stringify(stats) + '\n');
  // stdin may keep the loop alive; the work is done.
  (stdin as { destroy?: () => void } | undefined)?.destroy?.();
  return 0;
}

interface Writer {
  pid: number;
  stop(): Promise<WriteStats>;
  kill(): void;
}

async function startWriter(root: string): Promise<Writer> {
  const [cmd, ...pre] = selfInvocation();
  const child = spawn(cmd!, [...pre, 'demo-writer', root], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  for (let i = 0; !out.includes('ready\n'); i++) {
    if (child.exitCode !== null || i > 200) {
      child.kill();
      throw new Error(`the demo writer did not start: ${err.trim() || 'no output'}`);
    }
    await sleep(25);
  }
  return {
    pid: child.pid!,
    async stop() {
      child.stdin.end();
      const code = await exited;
      if (code !== 0) throw new Error(`the demo writer failed: ${err.trim()}`);
      return JSON.parse(out.trim().split('\n').pop()!) as WriteStats;
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

export async function demoMain(argv: string[], io: CliIo): Promise<number> {
  const keep = argv.includes('--keep');
  const t0 = Date.now();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'plone-backup-demo-'));
  const root = path.join(dir, 'site');
  const say = (s: string) => io.stdout.write(s + '\n');
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  let writer: Writer | undefined;
  let ok = true;
  try {
    // 1. A sample site, as a buildout leaves it.
    const { file, blobDir } = sitePaths(root);
    const site = await SampleSite.create({ file, blobDir });
    for (let i = 1; i <= 10; i++) await site.addDocument(`Welcome page ${i}`);
    for (let i = 1; i <= 5; i++) await site.uploadFile(`brochure-${i}.pdf`, Buffer.alloc(5000 + i * 1000, i));
    await site.close({ writeIndex: true });
    const dep = await discoverDeployment(root);
    say(`Sample deployment (${dep.source} layout) in ${root}`);

    // 2. A writer in another process, and backups while it writes.
    writer = await startWriter(root);
    say(`Writer started (pid ${writer.pid}): documents, uploads and replaced files, some commits paused between vote and finish.`);
    const made: { kind: BackupCommand; r: StorageBackupResult }[] = [];
    for (const kind of ['backup', 'backup', 'backup', 'snapshot', 'backup'] as BackupCommand[]) {
      await sleep(700);
      const r = (await backupDeployment(dep, kind))[0]!; // one storage: one result
      made.push({ kind, r });
      const f = r.filestorage;
      const blobs = r.blobGeneration ? `; blobs ${blobSummary(r)}` : '';
      say(
        `  ${kind.padEnd(8)} ${f.action === 'none' ? 'nothing new' : `${f.stamp} ${f.action.padEnd(11)} ${humanBytes(f.end - f.start).padStart(8)}, ${f.transactions} transactions`}${blobs}${r.attempts > 1 ? ` (started over ${r.attempts - 1}x: a blob vanished)` : ''}`,
      );
    }
    const stats = await writer.stop();
    writer = undefined;
    say(
      `Writer stopped: ${stats.commits} commits (${stats.documents} documents, ${stats.uploads} uploads, ${stats.replaced + stats.paused} replaced files, ${stats.paused} paused before finish).`,
    );

    // 3. Check the live site and every backup.
    const findings = await checkDeployment(dep);
    const bad = findings.filter((x) => x.severity !== 'info');
    const notes = findings.length - bad.length;
    if (bad.length) ok = false;
    say(
      bad.length
        ? `check: ${bad.length} problem(s): ${bad.map((x) => `${x.severity} ${x.code}: ${x.message}`).join(' | ')}`
        : `check: the live site and every backup are consistent${notes ? ` (${notes} notes)` : ''}.`,
    );

    // 4. A restore drill of the newest backup, in a temp folder.
    const drill = (await drillDeployment(dep))[0]!;
    if (!drill.ok) ok = false;
    say(
      drill.ok
        ? `drill ${drill.stamp}: restored ${humanBytes(drill.bytes)} in ${drill.restoreSeconds.toFixed(2)} s; ${drill.transactions} transactions read, index matches, all ${drill.blobFiles} blob files present.`
        : `drill ${drill.stamp}: FAILED: ${drill.problems.join('; ')}`,
    );

    // 5. Back to an earlier point in time (the first incremental), then incrementally to the newest.
    const earlier = made.find((m) => m.kind === 'backup' && m.r.filestorage.action === 'incremental') ?? made[0]!;
    const at = earlier.r.filestorage.stamp!;
    const back = (await restoreDeployment(dep, { date: at }))[0]!;
    const live = await checkDeployment(dep, { liveOnly: true });
    const liveBad = live.filter((x) => x.severity === 'error');
    if (liveBad.length || back.stamp !== at) ok = false;
    const aside = back.keptOld.length ? `; the state before kept beside it as *.before-restore-${path.basename(back.keptOld[0]!).split('.before-restore-')[1]}` : '';
    say(
      `restore to ${at} (an earlier point): ${back.mode}, ${humanBytes(back.bytesWritten)} Data.fs, ${back.blobFilesAdded} blob files; ` +
        (liveBad.length ? `PROBLEMS: ${liveBad.map((x) => x.message).join(' | ')}` : 'every blob record has its file') +
        `${aside}.`,
    );
    const fwd = (await restoreDeployment(dep, {}))[0]!;
    const newest = made.filter((m) => m.kind === 'backup' && m.r.filestorage.stamp).at(-1)!.r.filestorage.stamp;
    if (fwd.stamp !== newest) ok = false;
    say(`restore to the newest (${fwd.stamp}): ${fwd.mode}, appended ${humanBytes(fwd.bytesWritten)} and ${fwd.blobFilesAdded} missing blob files.`);
    say(`${ok ? 'Done' : 'FAILED'} in ${secs(Date.now() - t0)}.`);
    return ok ? 0 : 1;
  } finally {
    writer?.kill();
    if (keep) say(`(kept ${dir})`);
    else await fsp.rm(dir, { recursive: true, force: true });
  }
}
