/**
 * The remote side of the deployment commands: `push [--to URL]`, and
 * `--from URL` / `--remote` on list and verify (restore goes through
 * deploy.ts's own flow with the remote's session). Thin: which URL and
 * endpoint, then the engine, then printing. Credentials are never asked for
 * nor printed: the AWS environment and profile hold them.
 */

import { PloneBackupError, humanBytes, listRemote, openTarget, pushDeployment, verifyRemote, type Deployment, type RemoteTarget } from '../engine';
import type { CliIo } from './io';
import type { Parsed } from './deploy';

function usage(msg: string): PloneBackupError {
  return new PloneBackupError('USAGE', msg, { hint: 'Run plone-backup help for the options.' });
}

/** Whether the command reads a remote (`--from URL` or `--remote`). */
export function readsRemote(p: Parsed): boolean {
  return p.values.has('from') || p.flags.has('remote');
}

/** The target a command names: `--to`/`--from URL`, else (push, `--remote`) the configuration's `remote.url`. */
export async function targetFor(p: Parsed, dep: Deployment, flag: 'to' | 'from'): Promise<RemoteTarget> {
  let url = p.values.get(flag);
  if (url !== undefined && p.flags.has('remote')) throw usage(`--${flag} and --remote name the remote twice; give one`);
  if (url === undefined) {
    url = dep.remote?.url;
    if (url === undefined) throw usage(`no remote: pass --${flag} s3://BUCKET/PREFIX (or file:///FOLDER), or set "remote": {"url": …} in plone-backup.json`);
  }
  return openTarget(url, { endpoint: p.values.get('endpoint') ?? dep.remote?.endpoint });
}

export async function pushMain(p: Parsed, dep: Deployment, io: CliIo, common: { signal?: AbortSignal; log: (m: string) => void }, say: (s: string) => void): Promise<number> {
  if (p.positional.length) throw usage('push takes no arguments');
  const t = await targetFor(p, dep, 'to');
  try {
    const res = await pushDeployment(dep, t, common);
    if (p.flags.has('json')) io.stdout.write(JSON.stringify(res, null, 2) + '\n');
    else {
      for (const s of res.storages) {
        say(`${s.storage}: ${s.pushed.length ? `pushed ${s.pushed.length} generation${s.pushed.length > 1 ? 's' : ''} (${s.objects} objects, ${humanBytes(s.bytes)})` : 'nothing new to push'}${s.present ? `; ${s.present} already on the remote` : ''}`);
        for (const k of s.skipped) io.stderr.write(`warning: ${s.storage} ${k.stamp} not pushed: ${k.why}\n`);
      }
      common.log(`${res.stats.requests} requests, ${humanBytes(res.stats.uploaded)} sent to ${t.url}`);
    }
    return 0;
  } finally {
    t.close();
  }
}

export async function remoteListMain(p: Parsed, dep: Deployment, io: CliIo, common: { signal?: AbortSignal }): Promise<number> {
  const t = await targetFor(p, dep, 'from');
  try {
    const views = await listRemote(
      dep.storages.map((s) => s.name),
      t,
      common,
    );
    if (p.flags.has('json')) {
      io.stdout.write(JSON.stringify({ remote: t.url, storages: views }, null, 2) + '\n');
      return 0;
    }
    for (const v of views) {
      io.stdout.write(`${v.storage}: ${t.url}\n`);
      for (const g of v.generations) {
        if (g.problem) {
          io.stdout.write(`    ${g.stamp} PROBLEM: ${g.problem}\n`);
          continue;
        }
        const last = g.lastTime ? `, last ${g.lastTime.replace('T', ' ').slice(0, 19)} ${g.lastUser ? g.lastUser + ' ' : ''}"${g.lastDescription ?? ''}"` : '';
        const blobs = g.blobFiles !== undefined ? `; blobs: ${g.blobFiles} files, ${humanBytes(g.blobBytes ?? 0)}` : '';
        io.stdout.write(`${g.full ? '    ' : '      '}${g.stamp} ${g.full ? 'full' : 'incremental'} ${humanBytes(g.end - g.start)}${g.transactions !== undefined ? `, ${g.transactions} transactions` : ''}${last}${blobs}\n`);
      }
    }
    return 0;
  } finally {
    t.close();
  }
}

export async function remoteVerifyMain(p: Parsed, dep: Deployment, io: CliIo, common: { signal?: AbortSignal }, say: (s: string) => void): Promise<number> {
  const t = await targetFor(p, dep, 'from');
  try {
    const res = await verifyRemote(
      dep.storages.map((s) => s.name),
      t,
      { ...common, deep: p.flags.has('deep') },
    );
    const problems = res.flatMap((r) => r.problems);
    if (p.flags.has('json')) io.stdout.write(JSON.stringify({ ok: problems.length === 0, remote: t.url, storages: res }, null, 2) + '\n');
    else if (!problems.length) say(`Every generation on ${t.url} is whole: ${res.map((r) => `${r.storage} ${r.generations} generations, ${r.objects} objects`).join('; ')}${p.flags.has('deep') ? ', every byte read back' : ''}.`);
    if (problems.length) {
      if (!p.flags.has('json')) for (const x of problems) io.stderr.write(`${x}\n`);
      throw new PloneBackupError('REMOTE_BAD', `${problems.length} problem${problems.length > 1 ? 's' : ''} found on ${t.url}.`, { hint: 'Delete the objects named above from the remote and push again from a site that still has those backups (a push sends what is missing), or restore another date.' });
    }
    return 0;
  } finally {
    t.close();
  }
}
