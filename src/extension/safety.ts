/**
 * What keeps the extension from being turned against its user (issue 10):
 *
 * - Consent for paths outside the workspace folder. A workspace's
 *   plone-backup.json, zope.conf or ploneBackup.* settings can point the
 *   Data.fs, blob folder or backup folders anywhere (another site's backups,
 *   with `keep: 1`; a blobDir of ../../.ssh). Backups on another disk are the
 *   recommended setup, so nothing is refused: before an action that writes or
 *   deletes (backup, full backup, snapshot, zip backup, restore, delete a
 *   generation; retention runs inside the backups), the deployment's write
 *   targets (engine: outsideTargets, symlinks resolved) that lie outside the
 *   workspace folder are named in ONE modal warning, Allow / Cancel, with the
 *   configuration's pre_command / post_command / on_failure (shell commands
 *   it would run around backups and restores, and when one fails). "Allow"
 *   is remembered in the workspace state for that exact set of paths, so a
 *   changed configuration asks again. Read-only actions (list, verify, check,
 *   drill into a temp folder) ask nothing.
 *
 * - Test hooks. Command arguments that skip a confirmation or a safety check
 *   (`yes`, `force`, `keepOld: false`) are honoured only when the extension
 *   host runs with PLONE_BACKUP_TEST_HOOKS=1, which only the project's in-host
 *   test runner sets (scripts/vscode/run-offline.mjs for the suite,
 *   test/extension/runTest.ts). Then, and only then, activate() returns the
 *   API with these hooks, and the tests may answer confirmations through
 *   `hooks.confirm` instead of the modal dialog they cannot click. Without the
 *   flag there is no API, no hook, and every confirmation is the real dialog.
 */

import * as path from 'node:path';
import * as vscode from 'vscode';
import { outsideTargets, type Deployment } from '../engine';

export const TEST_HOOKS_ENV = 'PLONE_BACKUP_TEST_HOOKS';

/** A modal question: what it asks, the details, and the one button that says yes. */
export interface Confirmation {
  kind: 'outside' | 'restore' | 'delete' | 'schedule';
  message: string;
  detail: string;
  action: string;
}

export interface TestHooks {
  /** Honour `yes`, `force` and `keepOld: false` in command arguments (true under the flag; a test may turn it off). */
  bypassArgs: boolean;
  /** Answers confirmations instead of the modal dialog (else the dialog shows). */
  confirm?: (q: Confirmation) => boolean | Promise<boolean>;
  /** Picks from a quick pick instead of the user (the label picked; undefined dismisses it). Only Schedule Backups… asks through it. */
  pick?: (q: { title: string; items: string[] }) => string | undefined | Promise<string | undefined>;
}

/** The hooks, only when the test runner set the flag in the extension host's environment. */
export function testHooksFromEnv(env: NodeJS.ProcessEnv = process.env): TestHooks | undefined {
  return env[TEST_HOOKS_ENV] === '1' ? { bypassArgs: true } : undefined;
}

/** Asks a modal question; true only for its action button. */
export async function confirm(q: Confirmation, hooks: TestHooks | undefined): Promise<boolean> {
  if (hooks?.confirm) return hooks.confirm(q);
  const answer = await vscode.window.showWarningMessage(q.message, { modal: true, detail: q.detail }, q.action);
  return answer === q.action;
}

/** How many outside paths the prompt lists before "and N more". */
const LIST_MAX = 12;
/** Consents remembered per workspace folder (older ones are forgotten). */
const REMEMBER_MAX = 16;
const STATE_KEY = 'ploneBackup.outsideConsent';

type Remembered = Record<string, string[]>;

function sourceOf(dep: Deployment, root: string): string {
  const rel = (p: string) => {
    const r = path.relative(root, p);
    return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : p;
  };
  if ((dep.source === 'config' || dep.source === 'zconfig' || dep.source === 'recipe') && dep.configFile) return `${rel(dep.configFile)} and the ploneBackup.* settings`;
  return 'the ploneBackup.* settings';
}

export class OutsideConsent {
  constructor(
    private readonly state: vscode.Memento,
    private readonly hooks: TestHooks | undefined,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  /**
   * True when the action may go ahead: nothing it writes lies outside `root`,
   * or the user allowed these exact paths (now or before). False: cancelled,
   * nothing may be done.
   */
  async ensure(root: string, folderName: string, dep: Deployment): Promise<boolean> {
    const outside = await outsideTargets(root, dep);
    // A pre_command / post_command (buildout.cfg, plone-backup.json) or an
    // on_failure (plone-backup.json) is a shell command the workspace's
    // configuration would have us run: asked like paths.
    const commands = [dep.settings.preCommand, dep.settings.postCommand, dep.settings.onFailure].filter((c) => c.trim() !== '');
    if (outside.length === 0 && commands.length === 0) return true;
    const key = commands.length ? JSON.stringify({ outside, commands }) : JSON.stringify(outside);
    const remembered = this.state.get<Remembered>(STATE_KEY, {});
    if (remembered[root]?.includes(key)) return true;
    const shown = outside.slice(0, LIST_MAX).map((p) => `  ${p}`);
    if (outside.length > LIST_MAX) shown.push(`  … and ${outside.length - LIST_MAX} more`);
    const what = [outside.length ? `writes and deletes outside the folder ${folderName}` : '', commands.length ? 'runs shell commands' : ''].filter(Boolean).join(' and ');
    const ok = await confirm(
      {
        kind: 'outside',
        message: `This workspace's configuration (${sourceOf(dep, root)}) ${what}. Allow it?`,
        detail: [
          ...(outside.length ? ['Backing up, restoring and deleting generations write to, replace or delete in:', ...shown, ''] : []),
          ...(commands.length
            ? ['Before and after backups and restores, and when one fails, it runs (pre_command, post_command, on_failure):', ...commands.map((c) => `  ${c}`), '']
            : []),
          'Backups on another disk are fine. Allow only if these are the paths and commands of this site; you are asked again when they change.',
        ].join('\n'),
        action: 'Allow',
      },
      this.hooks,
    );
    if (!ok) {
      this.log.info(`Writing outside ${root} / running its commands was not allowed; nothing was done. Outside: ${outside.join(', ')}; commands: ${commands.join(' ; ')}`);
      return false;
    }
    this.log.info(`Allowed for ${root}: outside ${outside.join(', ') || 'nothing'}; commands: ${commands.join(' ; ') || 'none'}`);
    const keys = [...(remembered[root] ?? []).filter((k) => k !== key), key].slice(-REMEMBER_MAX);
    await this.state.update(STATE_KEY, { ...remembered, [root]: keys });
    return true;
  }

  /** Forgets every answer (for the tests; and a command could offer it). */
  async forget(): Promise<void> {
    await this.state.update(STATE_KEY, undefined);
  }
}
