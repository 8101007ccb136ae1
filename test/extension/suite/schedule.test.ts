// "Plone Backup: Schedule Backups…" in the real extension host: installs, shows and
// removes a deployment's schedule through the engine, and the Backups view says what
// is scheduled. Nothing reaches the machine's crontab or systemd: under the test
// hooks (and only there) PLONE_BACKUP_SCHEDULE_ENV points the engine's targets into
// a temporary folder (system and user unit folders, a stand-in crontab command that
// keeps the crontab in a file, no systemd running), and PATH gets a folder holding
// `plone-backup` (a link to this repository's dist/cli.js) and `node`, as an npm
// install leaves them. Quick picks and confirmations are answered through the hooks
// (`pick`, `confirm`), each recorded. The unit files and the real crontab command
// are tested against the real systemd-analyze and cron in test/deploy/schedule.test.ts.
//
// Runs alone (PLONE_BACKUP_TEST_GREP=Schedule) or after the other suites: it makes
// its own site when the workspace has none.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { scheduleId, unitBase, type InstalledSchedule, type ScheduleChange } from '../../../src/engine/internal';
import { Command } from '../../../src/extension/commands';
import { done, exec, EXTENSION_ID, ls, testWorkspace, type TestWorkspace } from './host';
import type { PloneBackupApi } from '../../../src/extension/extension';
import type { Confirmation } from '../../../src/extension/safety';
import { nth } from '../../support/must';

suite('Schedule Backups…', function () {
  this.timeout(60_000);
  let api: PloneBackupApi;
  let ws: string;
  let tmp: string;
  let w: TestWorkspace;
  let crontabFile: string;
  let cli: string;
  const saved = { env: process.env.PLONE_BACKUP_SCHEDULE_ENV, path: process.env.PATH };
  let asked: Confirmation[] = [];
  let picked: { title: string; items: string[] }[] = [];
  let answers: string[] = [];
  let answer = true;
  const systemDir = () => path.join(tmp, 'system');
  const ours = () => ls(systemDir()).filter((n) => n.startsWith('plone-backup-'));

  suiteSetup(async () => {
    // A sample site of its own, whatever suite ran before.
    w = await testWorkspace('schedule');
    ({ ws, api } = w);
    const ext = vscode.extensions.getExtension<PloneBackupApi>(EXTENSION_ID)!;
    assert.ok(api.hooks, 'the test hooks are not there (PLONE_BACKUP_TEST_HOOKS=1 in the extension host?)');
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'plone-backup-schedule-')));
    crontabFile = path.join(tmp, 'crontab.txt');
    const crontab = path.join(tmp, 'crontab');
    // crontab -l / - / -r, on a file.
    fs.writeFileSync(
      crontab,
      `#!/bin/sh\ncase "$1" in\n  -l) [ -f '${crontabFile}' ] && exec /bin/cat '${crontabFile}'; echo "no crontab for tester" >&2; exit 1;;\n  -) exec /bin/cat > '${crontabFile}';;\n  -r) exec /bin/rm '${crontabFile}';;\nesac\nexit 2\n`,
      { mode: 0o755 },
    );
    process.env.PLONE_BACKUP_SCHEDULE_ENV = JSON.stringify({
      systemUnitDir: systemDir(),
      userUnitDir: path.join(tmp, 'user'),
      systemctl: [path.join(tmp, 'no-systemctl')],
      crontab: [crontab],
      systemdRunning: false,
      userManagerRunning: false,
      lingerDir: path.join(tmp, 'linger'),
    });
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    cli = path.join(ext.extensionPath, 'dist', 'cli.js');
    assert.ok(fs.existsSync(cli), `${cli} is not built (npm run build)`);
    fs.symlinkSync(cli, path.join(bin, 'plone-backup'));
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    process.env.PATH = `${bin}${path.delimiter}${saved.path ?? ''}`;
    api.hooks.confirm = (q) => {
      asked.push(q);
      return answer;
    };
    api.hooks.pick = (q) => {
      picked.push(q);
      return answers.shift();
    };
    done(await exec(Command.refresh), 'refresh');
  });

  setup(() => {
    asked = [];
    picked = [];
    answers = [];
    answer = true;
    api.hooks.bypassArgs = true;
    fs.writeFileSync(crontabFile, 'MAILTO=me@example.org\n0 1 * * * echo mine\n');
  });

  suiteTeardown(async () => {
    if (api?.hooks) {
      api.hooks.confirm = undefined;
      api.hooks.pick = undefined;
    }
    if (saved.env === undefined) delete process.env.PLONE_BACKUP_SCHEDULE_ENV;
    else process.env.PLONE_BACKUP_SCHEDULE_ENV = saved.env;
    process.env.PATH = saved.path;
    await exec(Command.refresh);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    w?.dispose();
  });

  test('install from arguments: systemd units in the test root, the view says so, Show finds it, Remove takes it away', async () => {
    const res = done(await exec<ScheduleChange>(Command.schedule, { folder: ws, action: 'install', every: '15m', full: 'sun', drill: true, target: 'systemd' }), 'install');
    assert.equal(res.target, 'systemd');
    const schedules = asked.filter((q) => q.kind === 'schedule');
    assert.equal(schedules.length, 1, JSON.stringify(asked));
    assert.match(nth(schedules, 0).message, /every 15 min, a full backup on Sundays at 03:00, a restore drill on Saturdays at 04:40, from a systemd timer\?$/);
    assert.ok(nth(schedules, 0).detail.includes(cli), nth(schedules, 0).detail);
    const id = scheduleId(fs.realpathSync(nth(api.model.deployments, 0).root));
    assert.deepEqual(
      ours(),
      ['backup', 'drill', 'fullbackup'].flatMap((j) => [`${unitBase(id, j as 'backup')}.service`, `${unitBase(id, j as 'backup')}.timer`]),
    );
    assert.equal(ls(path.join(systemDir(), 'timers.target.wants')).length, 3);
    const service = fs.readFileSync(path.join(systemDir(), `${unitBase(id, 'backup')}.service`), 'utf8');
    assert.ok(service.includes(`ExecStart="${fs.realpathSync(process.execPath)}" "${fs.realpathSync(cli)}" "backup" "-q"`), service);
    assert.equal(fs.readFileSync(crontabFile, 'utf8'), 'MAILTO=me@example.org\n0 1 * * * echo mine\n', 'the crontab is left alone');
    assert.equal(api.view.description, 'scheduled every 15 min (systemd timer)');

    const shown = done(await exec<InstalledSchedule[]>(Command.schedule, { folder: ws, action: 'show' }), 'show');
    assert.deepEqual(
      shown.map((s) => [s.target, s.spec, s.edited]),
      [['systemd', { every: '15m', full: 'sun', drill: true }, false]],
    );

    // Remove: asked; No keeps everything.
    answer = false;
    assert.equal((await exec(Command.schedule, { folder: ws, action: 'remove' })).status, 'declined');
    assert.equal(ours().length, 6);
    answer = true;
    done(await exec(Command.schedule, { folder: ws, action: 'remove' }), 'remove');
    assert.deepEqual(ours(), []);
    assert.deepEqual(ls(path.join(systemDir(), 'timers.target.wants')), []);
    assert.equal(api.view.description, undefined);
  });

  test('through the pickers: a crontab where systemd does not run, the other lines kept; then Remove from the same command', async () => {
    answers = ['Every hour', 'Full backup on Wednesdays at 03:00', 'No drill'];
    const res = done(await exec<ScheduleChange>(Command.schedule, { folder: ws }), 'install');
    assert.equal(res.target, 'cron');
    assert.deepEqual(
      picked.map((p) => p.items.length),
      [3, 8, 2],
      'how often, which weekday (or none), a drill; no target picker without systemd',
    );
    const tab = fs.readFileSync(crontabFile, 'utf8');
    assert.ok(tab.startsWith('MAILTO=me@example.org\n0 1 * * * echo mine\n'), tab);
    const lines = tab.trimEnd().split('\n').slice(2);
    assert.equal(lines.filter((l) => !l.startsWith('#')).length, 3, tab);
    assert.ok(
      lines.every((l) => l.includes('# plone-backup-schedule:')),
      tab,
    );
    assert.equal(api.view.description, 'scheduled hourly (crontab)');

    picked = [];
    answers = ['Remove the schedule'];
    done(await exec(Command.schedule, { folder: ws }), 'remove');
    assert.deepEqual(nth(picked, 0).items, ['Change the schedule…', 'Show the schedule', 'Remove the schedule']);
    assert.equal(fs.readFileSync(crontabFile, 'utf8'), 'MAILTO=me@example.org\n0 1 * * * echo mine\n');
    assert.equal(api.view.description, undefined);
  });

  test('a dismissed picker or a No schedules nothing; without plone-backup on the PATH it says how to install it', async () => {
    answers = ['Every hour'];
    assert.equal((await exec(Command.schedule, { folder: ws })).status, 'declined', 'the weekday picker dismissed');
    answer = false;
    assert.equal((await exec(Command.schedule, { folder: ws, every: 'daily', full: 'none', drill: false, target: 'cron' })).status, 'declined');
    assert.equal(fs.readFileSync(crontabFile, 'utf8'), 'MAILTO=me@example.org\n0 1 * * * echo mine\n');
    assert.deepEqual(ours(), []);

    answer = true;
    const withCli = process.env.PATH;
    process.env.PATH = path.join(tmp, 'nowhere');
    try {
      const r = await exec(Command.schedule, { folder: ws, every: 'daily', full: 'none', drill: false, target: 'cron' });
      assert.equal(r.status, 'failed');
      assert.equal((r as { code: string }).code, 'SCHEDULE_FAILED');
      assert.match((r as { message: string }).message, /No plone-backup command was found on the PATH.*npm install -g plone-backup/);
    } finally {
      process.env.PATH = withCli;
    }
    assert.equal(fs.readFileSync(crontabFile, 'utf8'), 'MAILTO=me@example.org\n0 1 * * * echo mine\n');
  });

  test('without the test hooks, `yes` in the arguments does not skip the question', async () => {
    api.hooks.bypassArgs = false;
    answer = false;
    const r = await exec(Command.schedule, { folder: ws, every: 'daily', full: 'none', drill: false, target: 'cron', yes: true });
    assert.equal(r.status, 'declined');
    assert.equal(asked.filter((q) => q.kind === 'schedule').length, 1);
    assert.equal(fs.readFileSync(crontabFile, 'utf8'), 'MAILTO=me@example.org\n0 1 * * * echo mine\n');
  });
});
