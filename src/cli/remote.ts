/**
 * The remote side of the deployment commands: `push [--to URL]`, `forget`,
 * and `--from URL` / `--remote` on list, verify and drill (restore goes through
 * deploy.ts's own flow with the remote's session). Thin: which URL and
 * endpoint, then the engine, then printing. Credentials are never asked for
 * nor printed: the AWS environment and profile hold them.
 */

import {
  PloneBackupError,
  drillRemote,
  forgetRemote,
  humanBytes,
  keySourceFrom,
  listRemote,
  openTarget,
  parseRemoteUrl,
  policyIsEmpty,
  pushDeployment,
  recordRun,
  verifyRemote,
  type Deployment,
  type DrillResult,
  type ForgetPolicy,
  type ForgetResult,
  type PushResult,
  type RemoteDrillOptions,
  type RemoteTarget,
  type RunLogOptions,
} from '../engine';
import type { CliIo } from './io';
import type { Parsed } from './deploy';

function usage(msg: string): PloneBackupError {
  return new PloneBackupError('USAGE', msg, { hint: 'Run plone-backup help for the options.' });
}

/** Whether the command reads a remote (`--from URL` or `--remote`). */
export function readsRemote(p: Parsed): boolean {
  return p.values.has('from') || p.flags.has('remote');
}

/**
 * The target a command names: `--to`/`--from URL` or `--remote URL`, else
 * (push, forget, `--remote`) the configuration's `remote.url`; with its key:
 * `--key-file`, the configuration's (for its own remote only), or
 * PLONE_BACKUP_PASSPHRASE. A push may make a new remote encrypted.
 */
export async function targetFor(p: Parsed, dep: Deployment, flag: 'to' | 'from', signal?: AbortSignal, create = flag === 'to'): Promise<RemoteTarget> {
  const url = remoteUrl(p, dep, flag);
  const own = url === dep.remote?.url ? dep.remote : undefined;
  const key = keySourceFrom({ keyFile: p.values.get('key-file'), configKeyFile: own?.keyFile, passphraseEnv: own?.passphraseEnv });
  return openTarget(url, { endpoint: p.values.get('endpoint') ?? dep.remote?.endpoint, key, create, signal });
}

/** The URL a command names (see targetFor); USAGE when it names none, or names it twice. */
function remoteUrl(p: Parsed, dep: Deployment, flag: 'to' | 'from'): string {
  let url = p.values.get(flag);
  if (url !== undefined && p.flags.has('remote')) throw usage(`--${flag} and --remote name the remote twice; give one`);
  url ??= p.values.get('remote');
  if (url === undefined) {
    url = dep.remote?.url;
    if (url === undefined) throw usage(`no remote: pass --${flag} s3://BUCKET/PREFIX (or file:///FOLDER), or set "remote": {"url": …} in plone-backup.json`);
  }
  return url;
}

/** The run log's options of a push or forget: with the remote's URL, so that a run failing before it reached the remote still names it (only a URL that parses: never one carrying credentials). */
function runOptsFor(p: Parsed, dep: Deployment, runOpts: RunLogOptions): RunLogOptions {
  try {
    const url = remoteUrl(p, dep, 'to');
    parseRemoteUrl(url);
    return { ...runOpts, remote: url };
  } catch {
    return runOpts;
  }
}

/** What push and forget take of the deployment commands' options. */
type RemoteCommon = { signal?: AbortSignal; log: (m: string) => void; lockWaitMs?: number };

/** The retention a forget applies: the command line's --keep… when any is given, else the configuration's remote.keep…. */
export function forgetPolicy(p: Parsed, dep: Deployment): ForgetPolicy {
  const flags: [keyof ForgetPolicy, string][] = [
    ['keep', 'keep'],
    ['keepDaily', 'keep-daily'],
    ['keepWeekly', 'keep-weekly'],
    ['keepMonthly', 'keep-monthly'],
  ];
  const policy: ForgetPolicy = {};
  for (const [k, f] of flags) {
    const v = p.values.get(f);
    if (v === undefined) continue;
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw usage(`--${f} takes a whole number`);
    policy[k] = n;
  }
  if (policyIsEmpty(policy)) for (const [k] of flags) if (dep.remote?.[k] !== undefined) policy[k] = dep.remote[k];
  if (policyIsEmpty(policy))
    throw usage('forget needs a rule: --keep N (chains), --keep-daily N, --keep-weekly N or --keep-monthly N, or "remote": {"keep": …} in plone-backup.json');
  return policy;
}

function sayForget(res: ForgetResult, io: CliIo, say: (s: string) => void): void {
  for (const s of res.storages) {
    const what = res.dryRun ? 'would forget' : 'forgot';
    say(
      `${s.storage}: keeps ${s.kept.length} generation${s.kept.length === 1 ? '' : 's'}; ${what} ${s.forgotten.length}${s.forgotten.length ? ` (${[...s.forgotten].reverse().join(', ')})` : ''}, ${res.dryRun ? 'would delete' : 'deleted'} ${s.objects.length} object${s.objects.length === 1 ? '' : 's'}`,
    );
    // A dry run lists what would go, whatever the terminal.
    if (res.dryRun) {
      for (const g of [...s.forgotten].reverse()) io.stdout.write(`  generation ${g}\n`);
      for (const k of s.objects) io.stdout.write(`  object ${k}\n`);
    }
  }
  const n = res.unfinished.length;
  if (n) {
    const temps = res.unfinished.every((k) => k.startsWith('.plone-backup-'));
    const what = temps ? `temp file${n === 1 ? '' : 's'} of killed pushes` : `unfinished upload${n === 1 ? '' : 's'} no push will continue`;
    say(`${res.dryRun ? 'would end' : 'ended'} ${n} ${what}`);
    if (res.dryRun) for (const k of res.unfinished) io.stdout.write(`  unfinished ${k}\n`);
  }
}

export async function forgetMain(p: Parsed, dep: Deployment, io: CliIo, common: RemoteCommon, say: (s: string) => void, runOpts: RunLogOptions): Promise<number> {
  if (p.positional.length) throw usage('forget takes no arguments');
  if (p.values.has('from')) throw usage('forget names its remote with --remote URL (or --to URL), or takes the configured one');
  const policy = forgetPolicy(p, dep);
  // Recorded in the run log (a dry run too); a failed forget runs on_failure.
  const res = await recordRun(
    dep,
    'forget',
    async () => {
      const t = await targetFor(p, dep, 'to', common.signal, false);
      try {
        return await forgetRemote(dep, t, policy, { ...common, dryRun: p.flags.has('dry-run') });
      } finally {
        t.close();
      }
    },
    runOptsFor(p, dep, runOpts),
  );
  if (p.flags.has('json')) io.stdout.write(JSON.stringify(res, null, 2) + '\n');
  else sayForget(res, io, p.flags.has('dry-run') ? (x) => io.stdout.write(x + '\n') : say);
  return 0;
}

export async function pushMain(p: Parsed, dep: Deployment, io: CliIo, common: RemoteCommon, say: (s: string) => void, runOpts: RunLogOptions): Promise<number> {
  if (p.positional.length) throw usage('push takes no arguments');
  if (p.flags.has('dry-run')) throw usage('--dry-run is for forget (push --forget always pushes first)');
  // The retention is checked before anything is sent; it runs only after every new manifest is written.
  const policy = p.flags.has('forget') ? forgetPolicy(p, dep) : undefined;
  let url = '';
  let requests = 0;
  // Recorded in the run log; a failed push (or its forget) runs on_failure, as a failed backup does.
  const res = await recordRun(
    dep,
    'push',
    async (): Promise<PushResult & { forget?: ForgetResult }> => {
      const t = await targetFor(p, dep, 'to', common.signal);
      try {
        url = t.url;
        const pushed = await pushDeployment(dep, t, common);
        const forgot = policy ? await forgetRemote(dep, t, policy, common) : undefined;
        requests = t.stats.requests;
        return forgot ? { ...pushed, forget: forgot } : pushed;
      } finally {
        t.close();
      }
    },
    runOptsFor(p, dep, runOpts),
  );
  if (p.flags.has('json')) {
    io.stdout.write(JSON.stringify(res, null, 2) + '\n');
    return 0;
  }
  for (const s of res.storages) {
    say(
      `${s.storage}: ${s.pushed.length ? `pushed ${s.pushed.length} generation${s.pushed.length > 1 ? 's' : ''} (${s.objects} objects, ${humanBytes(s.bytes)})` : 'nothing new to push'}${s.present ? `; ${s.present} already on the remote` : ''}`,
    );
    for (const k of s.skipped) io.stderr.write(`warning: ${s.storage} ${k.stamp} not pushed: ${k.why}\n`);
  }
  if (res.forget) sayForget(res.forget, io, say);
  common.log(
    `${requests} requests, ${humanBytes(res.stats.uploaded)} sent to ${url}${res.stats.resumed ? ` (${humanBytes(res.stats.resumed)} of interrupted uploads continued)` : ''}${res.stats.cleaned ? `; removed ${res.stats.cleaned} temp file${res.stats.cleaned === 1 ? '' : 's'} of killed pushes` : ''}`,
  );
  return 0;
}

/** drill --from URL / --remote: the remote's newest (--all: every) generation fetched, restored into a temp folder and proved. */
export async function drillFromRemote(p: Parsed, dep: Deployment, opts: RemoteDrillOptions): Promise<DrillResult[]> {
  const t = await targetFor(p, dep, 'from', opts.signal);
  try {
    return await drillRemote(dep, t, opts);
  } finally {
    t.close();
  }
}

export async function remoteListMain(p: Parsed, dep: Deployment, io: CliIo, common: { signal?: AbortSignal }): Promise<number> {
  const t = await targetFor(p, dep, 'from', common.signal);
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
        io.stdout.write(
          `${g.full ? '    ' : '      '}${g.stamp} ${g.full ? 'full' : 'incremental'} ${humanBytes(g.end - g.start)}${g.transactions !== undefined ? `, ${g.transactions} transactions` : ''}${last}${blobs}\n`,
        );
      }
    }
    return 0;
  } finally {
    t.close();
  }
}

export async function remoteVerifyMain(p: Parsed, dep: Deployment, io: CliIo, common: { signal?: AbortSignal }, say: (s: string) => void): Promise<number> {
  const t = await targetFor(p, dep, 'from', common.signal);
  try {
    const res = await verifyRemote(
      dep.storages.map((s) => s.name),
      t,
      { ...common, deep: p.flags.has('deep') },
    );
    const problems = res.flatMap((r) => r.problems);
    if (p.flags.has('json')) io.stdout.write(JSON.stringify({ ok: problems.length === 0, remote: t.url, storages: res }, null, 2) + '\n');
    else if (!problems.length)
      say(
        `Every generation on ${t.url} is whole: ${res.map((r) => `${r.storage} ${r.generations} generations, ${r.objects} objects`).join('; ')}${p.flags.has('deep') ? ', every byte read back' : ''}.`,
      );
    if (problems.length) {
      if (!p.flags.has('json')) for (const x of problems) io.stderr.write(`${x}\n`);
      throw new PloneBackupError('REMOTE_BAD', `${problems.length} problem${problems.length > 1 ? 's' : ''} found on ${t.url}.`, {
        hint: 'Delete the objects named above from the remote and push again from a site that still has those backups (a push sends what is missing), or restore another date.',
      });
    }
    return 0;
  } finally {
    t.close();
  }
}
