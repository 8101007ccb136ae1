/**
 * The run log (engine: deploy/runlog.ts) and what reads it (deploy/status.ts,
 * `plone-backup status`): every CLI backup, restore, verify, check and drill
 * appends one line (stamp and bytes per storage, the error of a failed run),
 * no more readable than Data.fs; on_failure runs with the error in its
 * environment, and only on failure; the log rotates past its cap; a hostile
 * run log (garbage, a huge file, a link to elsewhere, a FIFO) never hangs,
 * is never followed, and costs only the lines it garbles. status is a
 * Nagios plugin: exit 0/1/2/3 for fresh, stale, failed and unusable, with
 * perfdata, --json, and --prometheus writing its file atomically.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DEFAULT_SETTINGS,
  KEEP_ROTATED,
  ROTATE_AT,
  RUN_LOG,
  appendRun,
  defaultDirs,
  deploymentStatus,
  discoverDeployment,
  formatRunLine,
  parseDuration,
  prometheusText,
  readRuns,
  recordRun,
  runLogPath,
  type Deployment,
  type RunRecord,
} from '../../src/engine/internal';
import { noHang } from '../support/assert';
import { type TestHooks, tmpDir } from '../support/fs';
import { runCli } from '../support/processes';
import { makeSite } from '../support/site';

const H = 3600_000;

function readLog(file: string): RunRecord[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as RunRecord);
}

/** A deployment object over a temp folder (no Data.fs needed for the run log itself). */
function bareDeployment(t: TestHooks): Deployment {
  const root = tmpDir(t);
  const varDir = path.join(root, 'var');
  fs.mkdirSync(path.join(varDir, 'filestorage'), { recursive: true });
  fs.writeFileSync(path.join(varDir, 'filestorage', 'Data.fs'), 'FS21');
  const dirs = defaultDirs(varDir, 'main');
  fs.mkdirSync(dirs.backups);
  return {
    root,
    varDir,
    source: 'options',
    storages: [{ name: 'main', file: path.join(varDir, 'filestorage', 'Data.fs'), dirs }],
    settings: { ...DEFAULT_SETTINGS },
    warnings: [],
  };
}

function record(over: Partial<RunRecord> = {}): RunRecord {
  const end = over.end ?? new Date().toISOString();
  return {
    v: 1,
    command: 'backup',
    outcome: 'ok',
    start: end,
    end,
    seconds: 1.5,
    host: 'h',
    pid: 1,
    storages: [{ name: 'main', stamp: '2026-03-01-10-00-00', action: 'full', bytes: 1234 }],
    ...over,
  };
}

/** A site with one backup made by the CLI, closed. */
async function siteWithBackup(t: TestHooks) {
  const root = tmpDir(t);
  const s = await makeSite(t, root, { files: 2 });
  await s.site.close();
  fs.chmodSync(s.file, 0o640);
  const r = runCli(['backup', '--dir', root, '--json']);
  assert.equal(r.status, 0, r.stderr);
  return { ...s, stamp: JSON.parse(r.stdout)[0].filestorage.stamp as string, log: path.join(s.varDir, 'backups', RUN_LOG) };
}

describe('the run log', () => {
  it('records every CLI run: backup, verify, drill, restore, check, and failures with their error', async (t) => {
    const s = await siteWithBackup(t);
    let lines = readLog(s.log);
    assert.equal(lines.length, 1);
    const b = lines[0]!;
    assert.equal(b.command, 'backup');
    assert.equal(b.outcome, 'ok');
    assert.equal(b.via, 'cli');
    assert.ok(Date.parse(b.start) <= Date.parse(b.end) && b.seconds >= 0);
    assert.equal(b.storages.length, 1);
    assert.equal(b.storages[0]!.name, 'main');
    assert.equal(b.storages[0]!.stamp, s.stamp);
    assert.equal(b.storages[0]!.action, 'full');
    const piece = fs.readdirSync(path.join(s.varDir, 'backups')).find((n) => /\.fsz?$/.test(n))!;
    assert.equal(b.storages[0]!.bytes, fs.statSync(path.join(s.varDir, 'backups', piece)).size, 'the bytes of the piece as stored');
    assert.ok((b.storages[0]!.blobFiles ?? 0) >= 2);
    // Created no more readable than Data.fs (0640).
    assert.equal(fs.statSync(s.log).mode & 0o777 & ~0o640, 0);

    for (const args of [['verify'], ['drill'], ['check'], ['restore', '--yes'], ['fullbackup']]) {
      const r = runCli([...args, '--dir', s.root]);
      assert.equal(r.status, 0, `${args[0]}: ${r.stderr}`);
    }
    lines = readLog(s.log);
    assert.deepEqual(
      lines.map((l) => `${l.command}:${l.outcome}`),
      ['backup:ok', 'verify:ok', 'drill:ok', 'check:ok', 'restore:ok', 'fullbackup:ok'],
    );
    const drill = lines[2]!;
    assert.equal(drill.storages[0]!.ok, true);
    assert.equal(drill.storages[0]!.stamp, s.stamp);
    const restore = lines[4]!;
    assert.equal(restore.storages[0]!.stamp, s.stamp);
    assert.equal(lines[1]!.storages[0]!.errors, 0);

    // Failures: a date before any backup, and a restore without a terminal to confirm on.
    let r = runCli(['restore', '2000-01-01', '--yes', '--dir', s.root]);
    assert.equal(r.status, 1);
    r = runCli(['restore', '--dir', s.root]);
    assert.equal(r.status, 2, r.stderr);
    lines = readLog(s.log);
    assert.equal(lines.length, 8);
    assert.equal(lines[6]!.outcome, 'failed');
    assert.equal(lines[6]!.error!.code, 'NO_BACKUPS');
    assert.match(lines[6]!.error!.message, /2000/);
    assert.deepEqual(lines[6]!.storages, []);
    assert.equal(lines[7]!.error!.code, 'USAGE');
  });

  it('on_failure runs with the error in its environment, and only when a run fails', async (t) => {
    const s = await siteWithBackup(t);
    const envFile = path.join(s.root, 'failure.env');
    const onFailure = `env | grep ^PLONE_BACKUP_ > ${envFile}`;
    let r = runCli(['backup', '--dir', s.root, '--on-failure', onFailure]);
    assert.equal(r.status, 0, r.stderr);
    r = runCli(['verify', '--dir', s.root, '--on-failure', onFailure]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!fs.existsSync(envFile), 'not run for a success');

    // plone-backup.json's on_failure, for a backup whose pre_command fails.
    fs.writeFileSync(path.join(s.root, 'plone-backup.json'), JSON.stringify({ pre_command: 'echo mounting failed; exit 3', on_failure: onFailure }));
    r = runCli(['backup', '--dir', s.root]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /pre_command/);
    const env = Object.fromEntries(
      fs
        .readFileSync(envFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.equal(env.PLONE_BACKUP_COMMAND, 'backup');
    assert.equal(env.PLONE_BACKUP_PHASE, 'failure');
    assert.equal(env.PLONE_BACKUP_ERROR_CODE, 'COMMAND_FAILED');
    assert.match(env.PLONE_BACKUP_ERROR!, /pre_command .*exit 3.*mounting failed/);
    assert.equal(env.PLONE_BACKUP_DATAFS, s.file);
    assert.equal(env.PLONE_BACKUP_ROOT, s.root);
    assert.equal(env.PLONE_BACKUP_RUN_LOG, s.log);
    assert.ok(env.PLONE_BACKUP_STARTED && env.PLONE_BACKUP_ENDED);
    const last = readLog(s.log).at(-1)!;
    assert.equal(last.outcome, 'failed');
    assert.equal(last.error!.code, 'COMMAND_FAILED');

    // --on-failure replaces the configuration's; a failing on_failure is a warning, not another error.
    fs.rmSync(envFile);
    r = runCli(['backup', '--dir', s.root, '--on-failure', 'echo webhook down >&2; exit 7']);
    assert.equal(r.status, 1);
    assert.ok(!fs.existsSync(envFile));
    assert.match(r.stderr, /warning: The on_failure .* failed too \(exit 7\): webhook down/);
    assert.match(r.stderr, /plone-backup backup: The pre_command/);

    // A deployment that cannot be read: --on-failure still runs, nothing is recorded.
    const empty = tmpDir(t);
    const marker = path.join(empty, 'code');
    r = runCli(['backup', '--dir', empty, '--on-failure', `echo $PLONE_BACKUP_ERROR_CODE > ${marker}`]);
    assert.equal(r.status, 1);
    assert.equal(fs.readFileSync(marker, 'utf8').trim(), 'SOURCE_MISSING');
    assert.deepEqual(fs.readdirSync(empty), ['code']);
  });

  it('records a failing check and drill (by what they find) and a thrown error, through recordRun', async (t) => {
    const dep = bareDeployment(t);
    const file = runLogPath(dep);
    const findings = [{ severity: 'error' as const, code: 'BLOB_MISSING' as const, storage: 'main', message: 'a blob is missing', file: 'x' }];
    assert.equal(await recordRun(dep, 'check', async () => findings), findings);
    await assert.rejects(
      recordRun(dep, 'backup', async () => {
        throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
      }),
    );
    // A result of undefined (a declined confirmation) is no run.
    await recordRun(dep, 'restore', async () => undefined);
    const lines = readLog(file);
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.error!.code, 'CHECK_FAILED');
    assert.match(lines[0]!.error!.message, /1 problem found: \[main\] BLOB_MISSING: a blob is missing/);
    assert.deepEqual(lines[0]!.storages, [{ name: 'main', errors: 1, warnings: 0 }]);
    assert.equal(lines[1]!.error!.code, 'IO');
    assert.match(lines[1]!.error!.message, /disk is full/);
  });

  it('a log that cannot be written never fails the run; no folder is made for it; a long message is cut to one line of at most 8 KiB', async (t) => {
    const dep = bareDeployment(t);
    const said: string[] = [];
    const logged: string[] = [];
    // No backups folder (no backup yet, an unmounted disk): not made, said in the run's log only.
    fs.rmSync(dep.storages[0]!.dirs.backups, { recursive: true });
    assert.deepEqual(await recordRun(dep, 'verify', async () => [], { warn: (m) => said.push(m), log: (m) => logged.push(m) }), []);
    assert.ok(!fs.existsSync(dep.storages[0]!.dirs.backups));
    assert.equal(said.length, 0);
    assert.match(logged[0]!, /not recorded in a run log: there is no backups folder/);
    // A folder that cannot be written: a warning, and the run's result all the same.
    fs.mkdirSync(dep.storages[0]!.dirs.backups);
    fs.writeFileSync(runLogPath(dep), '');
    fs.chmodSync(runLogPath(dep), 0o400);
    const res = await recordRun(dep, 'verify', async () => [], { warn: (m) => said.push(m) });
    assert.deepEqual(res, []);
    if (process.getuid?.() !== 0) {
      assert.equal(said.length, 1);
      assert.match(said[0]!, /could not be written \(Permission denied.*the verify itself succeeded/);
    }

    const line = formatRunLine(record({ outcome: 'failed', error: { code: 'IO', message: 'x'.repeat(100_000) } }));
    assert.ok(Buffer.byteLength(line) <= 8192);
    assert.equal(line.indexOf('\n'), line.length - 1);
    assert.equal(JSON.parse(line).error.code, 'IO');
  });

  it('rotates past its cap, keeping a few', async (t) => {
    const dep = bareDeployment(t);
    const file = runLogPath(dep);
    const big = 'y'.repeat(4000);
    // Fill it to just under the cap with valid lines.
    const one = formatRunLine(record({ outcome: 'failed', error: { code: 'IO', message: big } }));
    const n = Math.floor(ROTATE_AT / one.length);
    // Valid lines and one of padding, to 50 bytes under the cap: the next line does not fit.
    const full = one.repeat(n) + 'p'.repeat(ROTATE_AT - n * one.length - 51) + '\n';
    fs.writeFileSync(file, full);
    await appendRun(dep, record({ end: '2030-01-01T00:00:00.000Z' }));
    assert.ok(fs.existsSync(`${file}.1`));
    assert.equal(readLog(file).length, 1, 'the new line starts a new file');
    for (let i = 0; i < KEEP_ROTATED + 2; i++) {
      fs.writeFileSync(file, full);
      await appendRun(dep, record());
    }
    const names = fs
      .readdirSync(path.dirname(file))
      .filter((x) => x.startsWith(RUN_LOG))
      .sort();
    assert.deepEqual(names, [RUN_LOG, ...Array.from({ length: KEEP_ROTATED }, (_, i) => `${RUN_LOG}.${i + 1}`)]);
    // Read back: the current file and the newest rotated one (whose padding line is skipped).
    const read = await readRuns(file);
    assert.equal(read.records.length, n + 1);
    assert.equal(read.skipped, 1);
  });

  it('a hostile run log: garbage lines are skipped; a huge file, a link and a FIFO are never read through, followed or hung on', async (t) => {
    const dep = bareDeployment(t);
    const file = runLogPath(dep);
    const good = formatRunLine(record());
    fs.writeFileSync(
      file,
      [
        'garbage',
        '{"v":1}',
        JSON.stringify({ ...record(), storages: 'x' }),
        JSON.stringify({ ...record(), start: 'yesterday' }),
        JSON.stringify({ ...record(), command: 'rm -rf' }),
        '[1,2]',
        'null',
        good.trim(),
        '{"v":1,"command":"backup","outcome":"ok","start":"2026-01-01T00:00:00Z"', // torn
      ].join('\n'),
    );
    let read = await readRuns(file);
    assert.equal(read.records.length, 1);
    assert.equal(read.skipped, 8);
    assert.deepEqual(read.problems, []);

    // A huge (sparse) file: refused by size, at once; the next append rotates it away.
    fs.writeFileSync(file, '');
    fs.truncateSync(file, 200 << 20);
    read = await noHang('a huge run log', () => readRuns(file));
    assert.equal(read.records.length, 0);
    assert.match(read.problems[0]!, /bytes, more than/);
    await appendRun(dep, record());
    assert.equal(fs.statSync(`${file}.1`).size, 200 << 20);
    assert.equal(readLog(file).length, 1);

    // A link to a file elsewhere: neither appended to nor read.
    fs.rmSync(`${file}.1`);
    const elsewhere = path.join(tmpDir(t), 'victim');
    fs.writeFileSync(elsewhere, good);
    fs.rmSync(file);
    fs.symlinkSync(elsewhere, file);
    const said: string[] = [];
    await appendRun(dep, record(), { warn: (m) => said.push(m) });
    assert.equal(fs.readFileSync(elsewhere, 'utf8'), good, 'the link was not followed');
    assert.match(said[0]!, /symbolic link/);
    read = await readRuns(file);
    assert.equal(read.records.length, 0);
    assert.match(read.problems[0]!, /symbolic link/);
    const st = await deploymentStatus(dep);
    assert.ok(st.level >= 1, 'an unreadable run log is at least a warning');
    assert.ok(st.reasons.some((r) => /run log cannot be read/.test(r)));

    // A FIFO (no writer, no reader): neither blocks.
    fs.rmSync(file);
    execFileSync('mkfifo', [file]);
    said.length = 0;
    await noHang('appending to a FIFO', () => appendRun(dep, record(), { warn: (m) => said.push(m) }));
    assert.match(said[0]!, /not a regular file/);
    read = await noHang('reading a FIFO', () => readRuns(file));
    assert.equal(read.records.length, 0);
    assert.match(read.problems[0]!, /not a regular file/);
  });
});

describe('status', () => {
  it('parses ages', () => {
    assert.equal(parseDuration('26h'), 26 * 3600);
    assert.equal(parseDuration('1h30m'), 5400);
    assert.equal(parseDuration('2d'), 172800);
    assert.equal(parseDuration('90'), 90);
    assert.equal(parseDuration('soon'), undefined);
    assert.equal(parseDuration('-1h'), undefined);
  });

  it('a fresh backup is OK with perfdata; --json; --prometheus writes its file atomically', async (t) => {
    const s = await siteWithBackup(t);
    let r = runCli(['status', '--dir', s.root]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^OK - last backup \d+s ago \(1 backup\) \| age=\d+s;93600;180000 size=\d+B generations=1 last_size=\d+B duration=[\d.]+s\n$/);
    assert.equal(r.stdout.split('\n').length, 2, 'one line');

    r = runCli(['status', '--dir', s.root, '--json']);
    assert.equal(r.status, 0);
    const j = JSON.parse(r.stdout);
    assert.equal(j.level, 0);
    assert.equal(j.label, 'OK');
    assert.equal(j.runLog.runs, 1);
    assert.equal(j.storages[0].newestStamp, s.stamp);
    assert.equal(j.storages[0].generations, 1);
    assert.equal(j.commands[0].command, 'backup');
    assert.equal(j.commands[0].failing, false);
    assert.ok(j.commands[0].lastSuccess.end);

    runCli(['drill', '--dir', s.root]);
    const promDir = tmpDir(t);
    const prom = path.join(promDir, 'plone.prom');
    fs.writeFileSync(prom, 'old');
    const inode = fs.statSync(prom).ino;
    r = runCli(['status', '--dir', s.root, '-q', '--prometheus', prom]);
    assert.equal(r.status, 0, r.stdout);
    assert.equal(r.stdout, '', '-q prints nothing');
    assert.notEqual(fs.statSync(prom).ino, inode, 'replaced by a rename, never rewritten in place');
    assert.deepEqual(fs.readdirSync(promDir), ['plone.prom'], 'no temp file left');
    assert.equal(fs.statSync(prom).mode & 0o044, 0o044 & ~process.umask(), 'readable by node_exporter');
    const text = fs.readFileSync(prom, 'utf8');
    const dep = JSON.stringify(s.root);
    assert.match(text, /^# HELP plone_backup_status /m);
    assert.match(text, /^# TYPE plone_backup_status gauge$/m);
    assert.ok(text.includes(`plone_backup_status{deployment=${dep}} 0\n`));
    assert.match(text, new RegExp(`^plone_backup_last_success_timestamp_seconds\\{deployment=${escape(dep)},command="backup"\\} \\d+(\\.\\d+)?$`, 'm'));
    assert.match(text, /^plone_backup_last_duration_seconds\{.*command="drill"\} [\d.]+$/m);
    assert.match(text, /^plone_backup_last_backup_size_bytes\{.*storage="main"\} [1-9]\d*$/m);
    assert.match(text, /^plone_backup_generations\{.*storage="main"\} 1$/m);
    assert.match(text, /^plone_backup_last_drill_success\{.*storage="main"\} 1$/m);
    // Every sample line is `name{labels} number`.
    for (const l of text.split('\n').filter((x) => x && !x.startsWith('#'))) assert.match(l, /^[a-z_]+\{[^}]*\} -?[\d.]+$/, l);

    // A folder that cannot take the file: UNKNOWN.
    r = runCli(['status', '--dir', s.root, '--prometheus', path.join(promDir, 'missing', 'x.prom')]);
    assert.equal(r.status, 3);
    assert.match(r.stdout, /^UNKNOWN - the metrics file .* could not be written/);
  });

  it('stale, failed, never backed up and unusable: exit 1, 2, 2, 3', async (t) => {
    const dep = bareDeployment(t);
    const file = runLogPath(dep);
    const now = new Date('2030-06-01T12:00:00Z');
    const ago = (h: number) => new Date(now.getTime() - h * H).toISOString();

    // No run log, no backup: CRITICAL.
    let st = await deploymentStatus(dep, { now });
    assert.equal(st.level, 2);
    assert.match(st.line, /^CRITICAL - no backup found in .* \| age=U;93600;180000 size=0B generations=0$/);
    let r = runCli(['status', '--file', dep.storages[0]!.file, '--dir', dep.root]);
    assert.equal(r.status, 2, r.stdout);
    assert.match(r.stdout, /^CRITICAL - no backup found/);

    // Backed up 30 h ago: WARNING; 60 h ago: CRITICAL; thresholds given.
    fs.writeFileSync(file, formatRunLine(record({ end: ago(30), start: ago(30.1) })));
    st = await deploymentStatus(dep, { now });
    assert.equal(st.level, 1);
    assert.match(st.line, /^WARNING - last backup 30h ago, older than 26h \| age=108000s;93600;180000 size=0B generations=0 last_size=1234B duration=1.5s$/);
    st = await deploymentStatus(dep, { now, warnAge: 40 * 3600, critAge: 50 * 3600 });
    assert.equal(st.level, 0);
    assert.equal(st.line, 'OK - last backup 30h ago (0 backups) | age=108000s;144000;180000 size=0B generations=0 last_size=1234B duration=1.5s');
    st = await deploymentStatus(dep, { now, warnAge: 3600, critAge: 7200 });
    assert.equal(st.level, 2);

    // The last backup failed (after an older success): CRITICAL, with the error; a later success clears it.
    fs.appendFileSync(file, formatRunLine(record({ end: ago(1), outcome: 'failed', storages: [], error: { code: 'IO', message: 'The disk is full at /backups.' } })));
    st = await deploymentStatus(dep, { now, warnAge: 40 * 3600, critAge: 50 * 3600 });
    assert.equal(st.level, 2);
    assert.match(st.line, /^CRITICAL - backup failed 1h ago: The disk is full at \/backups\.; last backup 30h ago \(0 backups\) \|/);
    const backup = st.commands.find((c) => c.command === 'backup')!;
    assert.equal(backup.failing, true);
    assert.equal(backup.lastFailure!.error!.code, 'IO');
    assert.equal(backup.lastSuccess!.end, ago(30));
    fs.appendFileSync(file, formatRunLine(record({ end: ago(0.5) })));
    st = await deploymentStatus(dep, { now });
    assert.equal(st.level, 0, st.line);

    // A failed restore or check warns; a failed drill or verify is critical.
    fs.appendFileSync(file, formatRunLine(record({ command: 'check', end: ago(0.2), outcome: 'failed', storages: [], error: { code: 'CHECK_FAILED', message: '1 problem' } })));
    assert.equal((await deploymentStatus(dep, { now })).level, 1);
    fs.appendFileSync(
      file,
      formatRunLine(
        record({
          command: 'drill',
          end: ago(0.1),
          outcome: 'failed',
          storages: [{ name: 'main', ok: false, stamp: 'x' }],
          error: { code: 'DRILL_FAILED', message: 'blob missing' },
        }),
      ),
    );
    st = await deploymentStatus(dep, { now });
    assert.equal(st.level, 2);
    assert.equal(st.storages[0]!.lastDrill!.ok, false);
    assert.match(prometheusText(st), /^plone_backup_last_drill_success\{.*storage="main"\} 0$/m);
    assert.match(prometheusText(st), /^plone_backup_failing\{.*command="drill"\} 1$/m);

    // Through the CLI: exit 2 for the failed drill, with the line on stdout.
    r = runCli(['status', '--file', dep.storages[0]!.file, '--dir', dep.root]);
    assert.equal(r.status, 2, r.stdout);
    assert.match(r.stdout, /^CRITICAL - drill failed \S+ ago: blob missing; check failed/);

    // UNKNOWN: no deployment, bad ages.
    r = runCli(['status', '--dir', tmpDir(t)]);
    assert.equal(r.status, 3);
    assert.match(r.stdout, /^UNKNOWN - No Plone deployment found/);
    r = runCli(['status', '--file', dep.storages[0]!.file, '--warn-age', 'soon']);
    assert.equal(r.status, 3);
    assert.match(r.stdout, /^UNKNOWN - --warn-age takes an age/);
    r = runCli(['status', '--file', dep.storages[0]!.file, '--warn-age', '3h', '--crit-age', '2h']);
    assert.equal(r.status, 3);
    assert.match(r.stdout, /^UNKNOWN - The warning age/);
  });

  it('without a run log, the backups in the folder tell the age', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const dep = await discoverDeployment(root);
    // A backup made without a run log (as the recipe's bin/backup would have).
    const { backupDeployment } = await import('../../src/engine/internal');
    const [res] = await backupDeployment(dep, 'backup');
    assert.ok(!fs.existsSync(runLogPath(dep)));
    const st = await deploymentStatus(dep);
    assert.equal(st.level, 0, st.line);
    assert.equal(st.runLog.found, false);
    assert.equal(st.storages[0]!.lastBackupFrom, 'backups');
    assert.equal(st.storages[0]!.newestStamp, res!.filestorage.stamp);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
