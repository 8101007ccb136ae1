/**
 * Other processes: a real held Data.fs.lock (as a running Zope holds it), the
 * CLI bundle run as a child, and the writer process (writer-process.ts)
 * committing while backups run.
 */
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { TestHooks } from './fs';
import { CLI, WRITER_PROCESS } from './paths';
import { writerArgv, type WriterArgs, type WriterStats } from './writer-process';

export type { WriterArgs, WriterStats };

/** Holds a real exclusive lock on `<file>.lock` (util-linux flock), as a running Zope does. Released in t.after. */
export async function holdSiteLock(t: TestHooks, file: string): Promise<ChildProcess> {
  const lockFile = `${file}.lock`;
  const child = spawn('flock', ['-x', lockFile, 'sleep', '30'], { stdio: 'ignore' });
  t.after(() => {
    child.kill('SIGKILL');
  });
  // Wait until /proc/locks shows a lock on the file's inode.
  for (let i = 0; i < 200; i++) {
    if (fs.existsSync(lockFile)) {
      const ino = fs.statSync(lockFile).ino;
      const locks = fs.readFileSync('/proc/locks', 'utf8');
      if (locks.split('\n').some((l) => l.split(/\s+/).some((f) => /^[0-9a-f]+:[0-9a-f]+:\d+$/.test(f) && Number(f.split(':')[2]) === ino))) return child;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('flock never took the lock');
}

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli.js ...args` without a terminal and without stdin. */
export function runCli(args: string[], opts: { cwd?: string; input?: string } = {}): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd ?? os.tmpdir(),
    input: opts.input ?? '',
    encoding: 'utf8',
    env: { ...process.env, PLONE_BACKUP_DEBUG: '' },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface Writer {
  child: ChildProcess;
  /** Asks for a pack after the writer's next commit. */
  pack(): void;
  /** Resolves once stdout says `text` (e.g. "packed 2"); rejects when the writer exits first. */
  waitFor(text: string): Promise<void>;
  /** Closes its stdin and waits for its figures; fails when it failed. */
  stop(): Promise<WriterStats>;
}

/**
 * Starts the writer process (see writer-process.ts) and resolves once it is
 * ready; killed in t.after if still running.
 */
export async function startWriter(t: TestHooks, args: WriterArgs): Promise<Writer> {
  assert.ok(fs.existsSync(WRITER_PROCESS), `${WRITER_PROCESS} is built by npm run pretest`);
  const child = spawn(process.execPath, [WRITER_PROCESS, ...writerArgv(args)], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitFor = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (out.includes(text)) {
          child.stdout!.off('data', check);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      check();
      void exited.then(() => reject(new Error(`the writer exited before "${text}": ${err}`)));
    });
  await waitFor('ready\n');
  return {
    child,
    waitFor,
    pack() {
      child.stdin!.write('pack\n');
    },
    async stop() {
      child.stdin!.end();
      const code = await exited;
      assert.equal(code, 0, `the writer failed: ${err}`);
      return JSON.parse(out.trim().split('\n').pop()!) as WriterStats;
    },
  };
}
