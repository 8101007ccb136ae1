/**
 * `plone-backup scripts`: the recipe's scripts (bin/backup, bin/restore, ...,
 * named after the part as collective.recipe.backup names them) written as
 * small shell scripts that run plone-backup on this deployment, so that a
 * crontab line such as `0 3 * * * /srv/site/bin/backup -q` keeps working
 * unchanged after the switch.
 *
 * A script the recipe (or anyone) wrote is replaced only when asked
 * (`force`), and then kept beside as NAME.before-plone-backup; a script we
 * wrote before is replaced. Each is written to a temp name, fsynced and
 * renamed into place, mode 0755.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { READ_CAPS, fileLayer, fsyncDir, readFileCapped, writeFileAtomic } from '../base/io';
import type { Deployment } from './deployment';

/** The line that marks a script as ours (so that a later run may replace it). */
export const SCRIPT_MARK = '# Written by `plone-backup scripts`';

export interface ScriptSpec {
  /** File name in bin/. */
  name: string;
  /** The plone-backup command it runs. */
  command: 'backup' | 'snapshotbackup' | 'zipbackup' | 'restore' | 'snapshotrestore' | 'ziprestore' | 'altrestore';
}

/**
 * The scripts the recipe generates for the deployment's part (a part named
 * `backup` gives backup, snapshotbackup, restore, ...; a part named N gives
 * N, N-snapshot, N-restore, ...), with the same conditions: zip scripts with
 * enable_zipbackup, snapshotrestore unless disabled, altrestore with an
 * alternative_restore_source.
 */
export function recipeScripts(dep: Deployment): ScriptSpec[] {
  const part = dep.part?.name ?? 'backup';
  const name = (cmd: ScriptSpec['command']): string => {
    if (part === 'backup') return cmd;
    const suffix = {
      backup: '',
      snapshotbackup: '-snapshot',
      zipbackup: '-zip',
      restore: '-restore',
      snapshotrestore: '-snapshotrestore',
      ziprestore: '-ziprestore',
      altrestore: '-altrestore',
    }[cmd];
    return part + suffix;
  };
  const cmds: ScriptSpec['command'][] = ['backup', 'snapshotbackup', 'restore'];
  if (dep.settings.enableZipbackup) cmds.push('zipbackup', 'ziprestore');
  if (dep.settings.enableSnapshotrestore) cmds.push('snapshotrestore');
  if (dep.altSource) cmds.push('altrestore');
  return cmds.map((command) => ({ name: name(command), command }));
}

/** Single-quoted for /bin/sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The text of one script: `invocation` is how plone-backup is run (node and the CLI file, or the executable). */
export function scriptText(dep: Deployment, spec: ScriptSpec, invocation: readonly string[]): string {
  const args = [...invocation, spec.command, '--dir', dep.root, ...(dep.part ? ['--part', dep.part.name] : [])];
  return [
    '#!/bin/sh',
    `${SCRIPT_MARK}: collective.recipe.backup's bin/${spec.name}, run by plone-backup.`,
    '# Flags as before: -q (quiet, for cron), -n (no prompt), a DATE for restores.',
    `exec ${args.map(shellQuote).join(' ')} "$@"`,
    '',
  ].join('\n');
}

export interface WrittenScripts {
  written: string[];
  /** Scripts not ours that were replaced, and where each was kept. */
  keptAside: [string, string][];
}

/** Writes the scripts into `binDir` (default: the deployment's bin/). */
export async function writeScripts(dep: Deployment, invocation: readonly string[], o: { binDir?: string; force?: boolean } = {}): Promise<WrittenScripts> {
  const bin = o.binDir ?? path.join(dep.root, 'bin');
  const specs = recipeScripts(dep);
  const foreign: string[] = [];
  for (const s of specs) {
    const file = path.join(bin, s.name);
    const st = await fsp.lstat(file).catch(() => undefined);
    if (!st) continue;
    const ours =
      st.isFile() &&
      (await readFileCapped(file, READ_CAPS.config, { noFollow: true }).then(
        (b) => b.includes(SCRIPT_MARK),
        () => false,
      ));
    if (!ours) foreign.push(file);
  }
  if (foreign.length && !o.force) {
    throw new PloneBackupError(
      'WOULD_OVERWRITE',
      `${foreign.join(', ')} ${foreign.length > 1 ? 'exist and were' : 'exists and was'} not written by plone-backup; nothing was written.`,
      {
        path: foreign[0],
        hint: 'Pass --force to replace them (each is kept as NAME.before-plone-backup), or --bin-dir to write elsewhere.',
      },
    );
  }
  await fileLayer.mkdir(bin, { recursive: true, mode: 0o755 });
  const out: WrittenScripts = { written: [], keptAside: [] };
  for (const s of specs) {
    const file = path.join(bin, s.name);
    if (foreign.includes(file)) {
      const aside = `${file}.before-plone-backup`;
      await fileLayer.rename(file, aside);
      out.keptAside.push([file, aside]);
    }
    await writeFileAtomic(file, scriptText(dep, s, invocation), 0o755);
    out.written.push(file);
  }
  await fsyncDir(bin);
  return out;
}
