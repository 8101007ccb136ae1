/**
 * pre_command and post_command: shell commands an administrator configured
 * (collective.recipe.backup's options of those names) to run before and
 * after backups and restores: mount a disk, stop a ZEO client, copy the
 * result off-site. They run through /bin/sh as the recipe runs them
 * (utils.system, shell=True), with what they may need in the environment:
 *
 *   PLONE_BACKUP_COMMAND   backup, fullbackup, snapshot, zipbackup, restore, ...
 *   PLONE_BACKUP_PHASE     pre or post (failure for on_failure, runlog.ts)
 *   PLONE_BACKUP_DATAFS    the Data.fs files, one per line (main first)
 *   PLONE_BACKUP_BLOBSTORAGE  the blobstorage folders, one per line
 *   PLONE_BACKUP_LOCATION, PLONE_BACKUP_BLOB_LOCATION  the backup folders of the kind
 *   PLONE_BACKUP_STAMP     (post) the stamp written or restored
 *
 * A failing pre_command stops the run before anything is written (the
 * recipe exits 1 then); a failing post_command fails the run, whose backup or
 * restore is complete by then (said in the message). The output goes to the
 * caller's log; the command is the administrator's own configuration, not
 * input from a backup folder, and is never read from a workspace the editor
 * does not trust (the extension's settings).
 */

import { spawn } from 'node:child_process';
import { PloneBackupError, checkAbort } from '../base/errors';
import type { Deployment } from './deployment';
import { foldersFor, type Kind } from './kinds';

export interface HookContext {
  command: string;
  kind: Kind;
  /** `failure`: the environment of on_failure (runlog.ts), which adds the error to it. */
  phase: 'pre' | 'post' | 'failure';
  stamp?: string;
  signal?: AbortSignal;
  log?: (m: string) => void;
}

/** The environment a hook sees (exported for tests and the README's table). */
export function hookEnv(dep: Deployment, c: HookContext): Record<string, string> {
  const main = [...dep.storages.filter((s) => s.name === 'main'), ...dep.storages.filter((s) => s.name !== 'main')];
  const env: Record<string, string> = {
    PLONE_BACKUP_COMMAND: c.command,
    PLONE_BACKUP_PHASE: c.phase,
    PLONE_BACKUP_DATAFS: main.map((s) => s.file).join('\n'),
    PLONE_BACKUP_BLOBSTORAGE: main.flatMap((s) => (s.blobDir ? [s.blobDir] : [])).join('\n'),
    PLONE_BACKUP_LOCATION: main.map((s) => foldersFor(s, c.kind).repo).join('\n'),
    PLONE_BACKUP_BLOB_LOCATION: main.flatMap((s) => (s.blobDir ? [foldersFor(s, c.kind).blobs] : [])).join('\n'),
  };
  if (c.stamp) env.PLONE_BACKUP_STAMP = c.stamp;
  return env;
}

/** Runs the deployment's pre_command or post_command, if it has one; throws COMMAND_FAILED when it fails. */
export async function runHook(dep: Deployment, c: HookContext & { phase: 'pre' | 'post' }): Promise<void> {
  const cmd = c.phase === 'pre' ? dep.settings.preCommand : dep.settings.postCommand;
  if (!cmd.trim()) return;
  checkAbort(c.signal);
  const option = c.phase === 'pre' ? 'pre_command' : 'post_command';
  const { code, output } = await runConfigured(dep.root, cmd, option, hookEnv(dep, c), { signal: c.signal, log: c.log });
  if (code !== 0) {
    const after = c.phase === 'post' ? `, after the ${c.command} completed${c.stamp ? ` (${c.stamp})` : ''}` : `; the ${c.command} was not run`;
    throw new PloneBackupError('COMMAND_FAILED', `The ${option} \`${cmd}\` failed (exit ${code ?? 'by a signal'})${after}.${output ? ` It said: ${lastLines(output)}` : ''}`, {
      hint: `Fix the command or the ${option} setting.`,
    });
  }
}

/** The last lines of a command's output, as one line for a message. */
export function lastLines(output: string): string {
  return output.split('\n').slice(-3).join(' / ');
}

/**
 * Runs a command of the deployment's configuration (`option` names it in
 * messages: pre_command, post_command, on_failure) through /bin/sh in `cwd`
 * (the deployment's folder), with `env` added to this process's environment. Its
 * output (the first 64 KiB) goes to `log` and is returned; a command that
 * cannot be started is COMMAND_FAILED; one that runs past `timeoutMs` is
 * killed (SIGTERM) and reported with a null code.
 */
export async function runConfigured(
  cwd: string,
  cmd: string,
  option: string,
  env: Record<string, string>,
  o: { signal?: AbortSignal; log?: (m: string) => void; timeoutMs?: number } = {},
): Promise<{ code: number | null; output: string }> {
  o.log?.(`running ${option}: ${cmd}`);
  const res = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', cmd], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], signal: o.signal, timeout: o.timeoutMs });
    const chunks: Buffer[] = [];
    let size = 0;
    // The output is for the log; a command that prints without end is not kept whole.
    const keep = (b: Buffer) => {
      if (size < 64 * 1024) chunks.push(b);
      size += b.length;
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output: Buffer.concat(chunks).toString('utf8').trim() }));
  }).catch((e: unknown) => {
    checkAbort(o.signal);
    throw new PloneBackupError('COMMAND_FAILED', `The ${option} could not be started: ${(e as Error).message}.`, { hint: `Check ${option} in the configuration.`, cause: e });
  });
  if (res.output) o.log?.(res.output);
  return res;
}
