/**
 * The deployment commands (collective.recipe.backup's bin/backup, bin/restore
 * and friends): backup, fullbackup, snapshot, zipbackup, restore, snapshotrestore,
 * ziprestore, altrestore, list, verify, check, drill.
 *
 * Under cron (no terminal) a successful run prints nothing; a failure prints
 * one sentence to stderr and exits 1. Usage errors exit 2. --json prints data.
 */

import * as readline from 'node:readline';
import * as path from 'node:path';
import {
  humanBytes,
  checkBackups,
  restoreCommandKind,
  PloneBackupError,
  altSource,
  backupDeployment,
  blobSummary,
  checkDeployment,
  discoverDeployment,
  drillDeployment,
  listDeployment,
  normalizeDateArg,
  openRestore,
  openRemoteRestore,
  recordRun,
  reportUnreadDeployment,
  startRun,
  verifyFailures,
  writeScripts,
  type RunCommand,
  type RunLogOptions,
  type BackupCommand,
  type Deployment,
  type DiscoverOverrides,
  type RestoreOptions,
  type StoragePlan,
} from '../engine';
import { type CliIo, parseCompressLevel, progressPrinter, selfInvocation } from './io';
import { drillFromRemote, forgetMain, pushMain, readsRemote, remoteListMain, remoteVerifyMain, targetFor } from './remote';

export interface Parsed {
  flags: Set<string>;
  values: Map<string, string>;
  positional: string[];
}

const VALUE_OPTS = new Set([
  'dir',
  'config',
  'file',
  'blob-dir',
  'backup-dir',
  'keep',
  'compress-level',
  'lock-wait',
  'part',
  'bin-dir',
  'on-failure',
  'warn-age',
  'crit-age',
  'prometheus',
  'to',
  'from',
  'endpoint',
  'key-file',
  'keep-daily',
  'keep-weekly',
  'keep-monthly',
]);
const SHORT_FLAGS: Record<string, string> = { '-h': 'help', '-q': 'quiet', '-n': 'no-prompt' };
const FLAG_OPTS = new Set([
  'json',
  'yes',
  'force',
  'gzip',
  'no-gzip',
  'quick',
  'no-quick',
  'discard-old',
  'copy-blobs',
  'full-restore',
  'allow-missing-blobs',
  'all',
  'verbose',
  'live-only',
  'backups-only',
  'help',
  'quiet',
  'no-prompt',
  // Hidden: the runs `schedule install` sets up, recorded in the run log as the schedule's.
  'scheduled',
  'remote',
  'deep',
  'dry-run',
  'forget',
]);

function usage(msg: string): PloneBackupError {
  return new PloneBackupError('USAGE', msg, { hint: 'Run plone-backup help for the options.' });
}

export function parseDeployArgs(argv: string[]): Parsed {
  const p: Parsed = { flags: new Set(), values: new Map(), positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    // The recipe's scripts take -h, -q (quiet, for cron) and -n (no prompt).
    const short = SHORT_FLAGS[a];
    if (short) {
      p.flags.add(short);
      continue;
    }
    if (!a.startsWith('--')) {
      if (a.startsWith('-') && a !== '-') throw usage(`unknown option ${a}`);
      p.positional.push(a);
      continue;
    }
    const [name, glued] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (name === 'remote') {
      // --remote: the configured remote; --remote URL (s3:// or file://): that one.
      const v = glued ?? (/^(s3|file):\/\//.test(argv[i + 1] ?? '') ? argv[++i] : undefined);
      p.flags.add('remote');
      if (v !== undefined) p.values.set('remote', v);
      continue;
    }
    if (VALUE_OPTS.has(name)) {
      const v = glued ?? argv[++i];
      if (v === undefined) throw usage(`--${name} needs a value`);
      p.values.set(name, v);
    } else if (FLAG_OPTS.has(name)) {
      if (glued !== undefined) throw usage(`--${name} takes no value`);
      p.flags.add(name);
    } else throw usage(`unknown option --${name}`);
  }
  return p;
}

export const DEPLOY_HELP = `Deployment commands (run in the folder of a Plone site, or pass --dir):
  backup              filestorage backup (incremental when possible) + blob generation
  fullbackup          the same, with a full filestorage backup
  snapshotbackup      a full backup into the snapshot folders (alias: snapshot)
  zipbackup           one .fsz and one blob .tar, for copying a site elsewhere
  restore [DATE]      restore to DATE (UTC yyyy-mm-dd[-hh[-mm[-ss]]]), default the newest
  snapshotrestore [DATE], ziprestore
  altrestore [SOURCE] [DATE]
                      restore from alternative_restore_source, or from SOURCE (another
                      site's folder or its backup folders)
  list                every generation, with what it holds (--json)
  verify              every backup piece against its .dat, every blob generation against its state
  check               consistency of the live site and of the backups (--json)
  drill               restore the newest (--all: every) backup into a temp folder and prove it;
                      --from URL / --remote: the remote's generations (fetched first)
  push                copy every complete generation the remote lacks to it (--to URL, or
                      "remote" in plone-backup.json): blob files once, each generation's
                      manifest last; --forget: then apply the remote's retention
  forget              remote retention (--remote [URL]): --keep N (chains), --keep-daily N,
                      --keep-weekly N, --keep-monthly N (or remote.keep… in plone-backup.json);
                      deletes the other generations' manifests, then every object no kept
                      generation names; --dry-run lists what would go
  scripts             write bin/backup, bin/restore, ... (the recipe's script names for the
                      part) that run plone-backup, so crontab lines stay as they are
                      (--bin-dir DIR; --force replaces the recipe's, keeping them aside)

Options:
  --dir DIR           the deployment folder (default: the current folder)
  --config FILE       a plone-backup.json to use
  --file F --blob-dir D
                      one storage given directly
  --backup-dir DIR    where the backup folders go (default: the var folder)
  --part NAME         the collective.recipe.backup part of buildout.cfg to use
                      (default: the only one)
  --keep N            full backups to keep (default 2; 0 keeps everything)
  --gzip/--no-gzip, --quick/--no-quick
  --compress-level N  gzip level of filestorage pieces, 1 (fastest) to 9 (smallest);
                      default 6 (compressLevel in plone-backup.json)
  --json              print data as JSON
  --yes, -n, --no-prompt
                      do not ask before a restore
  -q, --quiet         print nothing but errors (for cron)
  --force             restore even though the site's lock is held
  --allow-missing-blobs  restore from a blob backup not made with the restored
                      state even when it lacks files that state needs
  --discard-old       do not keep the replaced Data.fs and blobstorage
  --copy-blobs        restore blob files as copies, not hard links to the backup
  --full-restore      never restore incrementally
  --lock-wait SECONDS wait this long for another run (default 10)
  --on-failure CMD    run CMD through /bin/sh when the run fails, with the error in its
                      environment (instead of on_failure in plone-backup.json)
  --verbose           say what is being done
  --to URL, --from URL
                      the remote for push, and for list, verify, drill and restore: s3://BUCKET/PREFIX
                      or file:///FOLDER; --remote: the one in plone-backup.json ("remote":
                      {"url", "endpoint"}). Credentials come from the AWS environment or
                      profile (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws); restore and drill
                      fetch what they need into var/remotecache first (after a restore it
                      keeps only the restored chain's pieces)
  --endpoint URL      the S3 server (over remote.endpoint, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL);
                      path-style addressing
  --deep              verify --from: read every object back (SHA-256, and the .dat md5 of pieces)
  --key-file FILE     an encrypted remote's key (remote.keyFile), or its passphrase in
                      PLONE_BACKUP_PASSPHRASE (or the variable remote.passphraseEnv names);
                      a push with a key to a new remote encrypts it (AES-256-GCM)

Every backup, restore, verify, check, drill, push and forget is recorded as one line in
.plone-backup.runs.jsonl in the main storage's backups folder; plone-backup status
reads it (see plone-backup status --help).
`;

/** Where the deployment is: --config, --file, --blob-dir, --backup-dir, --part (for every command that reads one). */
export function locationOverrides(p: Parsed): DiscoverOverrides {
  const o: DiscoverOverrides = {};
  if (p.values.has('config')) o.config = p.values.get('config');
  if (p.values.has('file')) o.file = p.values.get('file');
  if (p.values.has('blob-dir')) o.blobDir = p.values.get('blob-dir');
  if (p.values.has('backup-dir')) o.backupRoot = p.values.get('backup-dir');
  if (p.values.has('part')) o.part = p.values.get('part');
  return o;
}

/** Where the deployment is and how it is backed up: the location flags, --keep, --compress-level, --gzip, --quick, --on-failure. */
export function deployOverrides(p: Parsed): DiscoverOverrides {
  const o = locationOverrides(p);
  if (p.values.has('keep')) {
    const k = Number(p.values.get('keep'));
    if (!Number.isInteger(k) || k < 0) throw usage('--keep takes a whole number (0 keeps everything)');
    o.keep = k;
  }
  if (p.values.has('compress-level')) o.compressLevel = parseCompressLevel(p.values.get('compress-level')!);
  if (p.flags.has('gzip')) o.gzip = true;
  if (p.flags.has('no-gzip')) o.gzip = false;
  if (p.flags.has('quick')) o.quick = true;
  if (p.flags.has('no-quick')) o.quick = false;
  if (p.values.has('on-failure')) o.onFailure = p.values.get('on-failure');
  return o;
}

async function deployment(p: Parsed): Promise<Deployment> {
  return discoverDeployment(p.values.get('dir') ?? process.cwd(), deployOverrides(p));
}

/**
 * The deployment, with its configuration warnings (an unknown key, a deprecated name) on stderr: never silently ignored.
 * When it cannot be read, a run's `--on-failure` command still runs (there is no run log to record it in).
 */
async function deploymentSaying(p: Parsed, io: CliIo, run?: { command: RunCommand; opts: RunLogOptions }): Promise<Deployment> {
  let dep: Deployment;
  try {
    dep = await deployment(p);
  } catch (e) {
    const cmd = p.values.get('on-failure');
    if (run && cmd) await reportUnreadDeployment(path.resolve(p.values.get('dir') ?? process.cwd()), cmd, run.command, e, run.opts);
    throw e;
  }
  for (const w of dep.warnings) io.stderr.write(`warning: ${w}\n`);
  if (dep.debug) p.flags.add('verbose');
  if (p.flags.has('verbose')) for (const n of dep.notes ?? []) io.stderr.write(`${n}\n`);
  return dep;
}

function lockWait(p: Parsed): number | undefined {
  if (!p.values.has('lock-wait')) return undefined;
  const s = Number(p.values.get('lock-wait'));
  if (!Number.isFinite(s) || s < 0) throw usage('--lock-wait takes a number of seconds');
  return s * 1000;
}

async function ask(io: CliIo, question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: io.stdin ?? process.stdin, output: io.stderr });
  try {
    const answer = await new Promise<string>((resolve) => rl.question(question, resolve));
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

function describePlan(p: StoragePlan): string {
  const s = p.storage;
  if (p.mode === 'blobs') return `  ${s.name}: replace ${s.blobDir} from the blob backup ${p.generation?.name ?? p.stamp} (only_blobs: ${s.file} is left as it is)`;
  const what = p.mode === 'full' ? 'replace' : p.mode === 'incremental' ? 'append the missing transactions to' : 'leave unchanged';
  const from = p.source.type === 'copy' ? p.source.file : `${p.stamp} (${p.chain.length} piece${p.chain.length > 1 ? 's' : ''})`;
  return `  ${s.name}: ${what} ${s.file}${s.blobDir ? ` and ${s.blobDir}` : ''} from ${from}${p.mismatch ? `\n    warning: ${p.mismatch}` : ''}`;
}

/** Shows the plan and asks for a "yes" (refused without a terminal to ask on). */
async function confirmRestore(io: CliIo, plans: StoragePlan[]): Promise<boolean> {
  if (!(io.stdin as { isTTY?: boolean } | undefined)?.isTTY) {
    throw new PloneBackupError('USAGE', 'A restore replaces the database and needs a "yes"; there is no terminal to ask.', {
      hint: 'Pass --yes to restore without asking.',
    });
  }
  io.stderr.write(`This will restore:\n${plans.map(describePlan).join('\n')}\n`);
  return ask(io, 'Are you sure? (yes/No)? ');
}

/** restore --from URL / --remote: what the restore needs fetched into the cache, then the local restore's session over it. */
async function openFromRemote(p: Parsed, dep: Deployment, opts: RestoreOptions) {
  if (opts.source) throw usage('altrestore restores from a folder; --from and --remote go with restore, snapshotrestore and ziprestore');
  const t = await targetFor(p, dep, 'from');
  try {
    return (await openRemoteRestore(dep, t, opts)).session;
  } finally {
    t.close();
  }
}

export async function deployMain(cmd: string, argv: string[], io: CliIo): Promise<number> {
  const p = parseDeployArgs(argv);
  if (p.flags.has('help')) {
    io.stdout.write(DEPLOY_HELP);
    return 0;
  }
  const json = p.flags.has('json');
  // --verbose, or the recipe part's `debug = true` (set once the deployment is read).
  const isVerbose = () => p.flags.has('verbose');
  const log = (m: string) => {
    if (isVerbose()) io.stderr.write(m + '\n');
  };
  const progress = isVerbose() || json || p.flags.has('quiet') ? undefined : progressPrinter(io);
  const quiet = p.flags.has('quiet');
  const say = (s: string) => {
    if ((io.isTTY && !quiet) || isVerbose()) io.stdout.write(s + '\n');
  };
  const out = (data: unknown) => io.stdout.write(JSON.stringify(data, null, 2) + '\n');
  const common = { signal: io.signal, log, onProgress: progress?.update, lockWaitMs: lockWait(p) };
  // The run log and on_failure: their problems are said even under cron (the run itself is not failed for them).
  const runOpts: RunLogOptions = { log, warn: (m) => io.stderr.write(`warning: ${m}\n`), via: p.flags.has('scheduled') ? 'schedule' : 'cli' };
  const runCommand = (cmd === 'snapshotbackup' ? 'snapshot' : cmd) as RunCommand;
  const asRun = { command: runCommand, opts: runOpts };
  try {
    switch (cmd) {
      case 'backup':
      case 'fullbackup':
      case 'snapshot':
      case 'snapshotbackup':
      case 'zipbackup': {
        if (p.positional.length) throw usage(`${cmd} takes no arguments`);
        const dep = await deploymentSaying(p, io, asRun);
        const kind = runCommand as BackupCommand;
        const res = await recordRun(dep, kind, () => backupDeployment(dep, kind, common), runOpts);
        progress?.done();
        if (json) out(res);
        for (const r of res) {
          const fsr = r.filestorage;
          const piece = fsr.action === 'none' ? 'no new transactions' : `${fsr.action} ${fsr.piece} (${humanBytes(fsr.end - fsr.start)}, ${fsr.transactions} transactions)`;
          const blobs = r.blobGeneration ? `; blobs ${blobSummary(r)}` : '';
          if (!json) say(`${r.storage}: ${piece}${blobs}${r.removed.length ? `; removed ${r.removed.length} old files` : ''}`);
        }
        return 0;
      }
      case 'restore':
      case 'snapshotrestore':
      case 'ziprestore':
      case 'altrestore': {
        const dep = await deploymentSaying(p, io, asRun);
        const opts: RestoreOptions = {
          ...common,
          kind: restoreCommandKind(cmd) ?? 'backup',
          force: p.flags.has('force'),
          allowMissingBlobs: p.flags.has('allow-missing-blobs'),
          keepOld: p.flags.has('discard-old') ? false : undefined,
          blobMode: p.flags.has('copy-blobs') ? 'copy' : undefined,
          incremental: p.flags.has('full-restore') ? false : undefined,
        };
        if (cmd === 'altrestore') {
          // altrestore [DATE] restores from the configured alternative_restore_source,
          // as the recipe's bin/altrestore; altrestore FOLDER [DATE] from another site's folder.
          const folders = p.positional.filter((a) => !/^\d{4}-\d\d-\d\d/.test(a));
          const dates = p.positional.filter((a) => /^\d{4}-\d\d-\d\d/.test(a));
          if (folders.length > 1 || dates.length > 1) throw usage('altrestore takes at most one SOURCE folder and one DATE');
          if (dates[0] !== undefined) opts.date = normalizeDateArg(dates[0]);
          const alt = dep.altSource;
          if (folders[0] !== undefined) {
            const src = path.resolve(folders[0]);
            opts.source = (s) => altSource(src, s);
          } else if (alt) {
            opts.source = (s) => {
              if (s.name !== 'main') throw usage(`alternative_restore_source names the main storage only; ${s.name} has none`);
              return { type: 'repository', repo: alt.repo, blobs: s.blobDir ? alt.blobs : undefined };
            };
          } else throw usage('altrestore needs a SOURCE folder, or alternative_restore_source in the configuration');
        } else if (cmd === 'ziprestore') {
          if (p.positional.length) throw usage('ziprestore takes no arguments');
        } else {
          if (p.positional.length > 1) throw usage(`${cmd} takes at most one DATE`);
          if (p.positional[0] !== undefined) opts.date = normalizeDateArg(p.positional[0]);
        }
        // The locks, the "is the site running" refusal and the plan, before anything is asked.
        // A restore that cannot even be opened is a failed run; a declined one is no run.
        const run = startRun(dep, runCommand as 'restore', runOpts);
        const opening = readsRemote(p) ? openFromRemote(p, dep, opts) : openRestore(dep, opts);
        const session = await opening.catch(async (e: unknown) => {
          await run.failed(e);
          throw e;
        });
        let res;
        try {
          res = await run.track(async () => {
            if (!p.flags.has('yes') && !p.flags.has('no-prompt') && !(await confirmRestore(io, session.plans))) return undefined;
            return session.run();
          });
        } finally {
          await session.close();
        }
        if (!res) {
          io.stderr.write('Nothing was restored.\n');
          return 1;
        }
        progress?.done();
        if (json) out(res);
        else
          for (const r of res) {
            say(`${r.storage}: ${r.mode} restore${r.stamp ? ` to ${r.stamp}` : ''} (${humanBytes(r.bytesWritten)} written, ${r.blobFilesAdded} blob files)`);
            for (const k of r.keptOld) say(`  the previous state is kept at ${k}`);
            for (const w of r.warnings) io.stderr.write(`warning: ${w}\n`);
          }
        return 0;
      }
      case 'push': {
        const dep = await deploymentSaying(p, io, asRun);
        return await pushMain(p, dep, io, common, say, runOpts);
      }
      case 'forget': {
        const dep = await deploymentSaying(p, io, asRun);
        return await forgetMain(p, dep, io, common, say, runOpts);
      }
      case 'list': {
        const dep = await deploymentSaying(p, io);
        if (readsRemote(p)) return await remoteListMain(p, dep, io, common);
        const views = await listDeployment(dep, common);
        if (json) {
          out({ root: dep.root, source: dep.source, storages: views });
          return 0;
        }
        for (const v of views) {
          io.stdout.write(`${v.storage}: ${v.file}${v.blobDir ? ` + ${v.blobDir}` : ''}\n`);
          for (const g of v.groups) {
            if (!g.chains.length) continue;
            io.stdout.write(`  ${g.kind} (${g.repository})\n`);
            for (const c of g.chains) {
              for (const gen of [c.full, ...c.incrementals]) {
                const ind = gen.full ? '    ' : '      ';
                const last = gen.lastTime ? `, last ${gen.lastTime.replace('T', ' ').slice(0, 19)} ${gen.lastUser ? gen.lastUser + ' ' : ''}"${gen.lastDescription ?? ''}"` : '';
                io.stdout.write(
                  `${ind}${gen.stamp} ${gen.full ? 'full' : 'incremental'} ${humanBytes(gen.end - gen.start)}, ${gen.transactions} transactions${last}; blobs: ${gen.blob.status}${gen.problem ? `; PROBLEM: ${gen.problem}` : ''}\n`,
                );
              }
            }
          }
        }
        return 0;
      }
      case 'verify': {
        // The same code as `check` for the backups (and the extension's Verify):
        // every piece against its .dat, every blob generation against its state.
        const dep = await deploymentSaying(p, io, asRun);
        if (readsRemote(p)) {
          // Recorded as a verify run (ok or failed); its findings are the remote's, not the backups'.
          await recordRun(dep, 'verify', async () => void (await remoteVerifyMain(p, dep, io, common, say)), runOpts);
          return 0;
        }
        const findings = await recordRun(dep, 'verify', () => checkBackups(dep, { ...common, quick: p.flags.has('quick') }), runOpts);
        progress?.done();
        // A piece no .dat lists cannot be verified: that fails verify, though check only warns.
        const failed = verifyFailures(findings);
        const problems = failed.map((f) => f.message);
        if (json) out({ ok: problems.length === 0, problems, findings });
        else if (problems.length === 0) say('Every backup piece matches its .dat and every blob generation holds its state.');
        if (problems.length) {
          if (!json) for (const x of problems) io.stderr.write(`${x}\n`);
          throw new PloneBackupError('PIECE_MISMATCH', `${problems.length} problem${problems.length > 1 ? 's' : ''} found in the backups.`, { hint: 'Make a new full backup.' });
        }
        return 0;
      }
      case 'check': {
        const dep = await deploymentSaying(p, io, asRun);
        const checkOpts = { ...common, liveOnly: p.flags.has('live-only'), backupsOnly: p.flags.has('backups-only'), quick: p.flags.has('quick') };
        const findings = await recordRun(dep, 'check', () => checkDeployment(dep, checkOpts), runOpts);
        progress?.done();
        const errors = findings.filter((f) => f.severity === 'error');
        if (json) out({ ok: errors.length === 0, findings });
        else {
          for (const f of findings) {
            if (f.severity === 'info' && !isVerbose()) continue;
            io.stdout.write(`${f.severity}: [${f.storage}] ${f.message}${f.hint ? ` ${f.hint}` : ''}\n`);
          }
          const infos = findings.length - findings.filter((f) => f.severity !== 'info').length;
          if (findings.length === 0) say('No problems found.');
          else if (infos && !isVerbose()) say(`(${infos} notes; --verbose shows them)`);
        }
        return errors.length ? 1 : 0;
      }
      case 'scripts': {
        if (p.positional.length) throw usage('scripts takes no arguments');
        const dep = await deploymentSaying(p, io);
        const invocation = selfInvocation();
        const binDir = p.values.has('bin-dir') ? path.resolve(p.values.get('bin-dir')!) : undefined;
        const res = await writeScripts(dep, invocation, { binDir, force: p.flags.has('force') });
        if (json) out(res);
        else {
          for (const [f, aside] of res.keptAside) io.stdout.write(`kept the previous ${path.basename(f)} as ${aside}\n`);
          io.stdout.write(`wrote ${res.written.map((f) => path.relative(process.cwd(), f) || f).join(', ')}\n`);
        }
        return 0;
      }
      case 'drill': {
        const dep = await deploymentSaying(p, io, asRun);
        const drillOpts = { ...common, all: p.flags.has('all') };
        const res = await recordRun(dep, 'drill', () => (readsRemote(p) ? drillFromRemote(p, dep, drillOpts) : drillDeployment(dep, drillOpts)), runOpts);
        progress?.done();
        const ok = res.every((r) => r.ok);
        if (json) out({ ok, drills: res });
        else
          for (const r of res) {
            io.stdout.write(
              r.ok
                ? `${r.storage} ${r.stamp}: restored in ${r.restoreSeconds.toFixed(2)} s; ${r.transactions} transactions read, index matches, ${r.blobFiles} blob files present (checked in ${r.checkSeconds.toFixed(2)} s)\n`
                : `${r.storage} ${r.stamp}: FAILED: ${r.problems.join('; ')}\n`,
            );
          }
        return ok ? 0 : 1;
      }
      default:
        throw usage(`unknown command ${cmd}`);
    }
  } finally {
    progress?.done();
  }
}
