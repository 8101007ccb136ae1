// Issue 11, goal 3: the extension's live scan of Data.fs runs in a worker
// thread, never on the extension host's own, and a new window (an empty
// in-memory cache) continues from the scan cache beside the backups, written
// there because the backups folder is inside the workspace: only what was
// appended since is scanned.
//
// Self-contained: starts from a fresh sample site in the test workspace's var/
// (the old one moved aside, as quickfix.test.ts does).
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { LIVE_SCAN_FILE, SampleSite } from '../../../src/engine/internal';
import { Command } from '../../../src/extension/commands';
import { done, exec, EXTENSION_ID, waitFor } from './host';
import type { PloneBackupApi } from '../../../src/extension/extension';

suite('The live scan: off the extension host, continued from its cache', function () {
  this.timeout(60_000);
  let api: PloneBackupApi;
  let ws: string;
  let var_: string;
  let dataFs: string;
  let blobDir: string;
  let attic: string;

  suiteSetup(async () => {
    ws = process.env.PLONE_BACKUP_TEST_WORKSPACE!;
    assert.ok(ws, 'PLONE_BACKUP_TEST_WORKSPACE is not set');
    var_ = path.join(ws, 'var');
    dataFs = path.join(var_, 'filestorage', 'Data.fs');
    blobDir = path.join(var_, 'blobstorage');
    attic = fs.mkdtempSync(path.join(os.tmpdir(), 'plone-backup-attic-'));
    api = (await vscode.extensions.getExtension<PloneBackupApi>(EXTENSION_ID)!.activate())!;
    assert.ok(api?.diagnostics, 'the test hooks are not there (PLONE_BACKUP_TEST_HOOKS=1 in the extension host?)');
  });

  suiteTeardown(() => {
    if (attic) fs.rmSync(attic, { recursive: true, force: true });
  });

  test('a check scans in a worker and writes the cache; a new window scans only what was appended', async () => {
    try {
      if (fs.existsSync(var_)) fs.renameSync(var_, path.join(attic, 'var'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      fs.rmSync(var_, { recursive: true, force: true });
    }
    done(await exec(Command.refresh), 'refresh');
    const site = await SampleSite.create({ file: dataFs, blobDir });
    await site.addDocument('Front page');
    await site.uploadFile('report.pdf', crypto.randomBytes(3000));
    await site.close();
    done(await exec(Command.refresh), 'refresh');
    done(await exec(Command.backup), 'backup');

    const from = api.diagnostics.scans.length;
    done(await exec(Command.check), 'check');
    const size = fs.statSync(dataFs).size;
    const mine = () => api.diagnostics.scans.slice(from);
    const first = mine().find((r) => r.end === size);
    assert.ok(first, `no scan to the end of Data.fs among ${JSON.stringify(mine())}`);
    assert.equal(first.offThread, true, 'the scan ran in a worker thread');
    const cacheFile = path.join(var_, 'backups', LIVE_SCAN_FILE);
    assert.ok(fs.existsSync(cacheFile), 'the scan cache is written beside the backups (inside the workspace)');

    // New transactions; the automatic check they cause (if any) continues in memory
    // (and leaves the cache file where the first scan ended: a small step is not written).
    const again = await SampleSite.open({ file: dataFs, blobDir });
    await again.addDocument('News');
    await again.uploadFile('logo.png', crypto.randomBytes(2000));
    await again.close();
    const grown = fs.statSync(dataFs).size;
    await waitFor(() => api.diagnostics.scans.some((r) => r.end === grown), 'the automatic check', 8_000).catch(() => undefined);
    await api.diagnostics.check([], { live: false, backups: false, quick: true }); // the queue drained
    // A new window: nothing in memory.
    api.diagnostics.cache.files.clear();
    const mark = api.diagnostics.scans.length;
    done(await exec(Command.check), 'check');
    // One of them continued from the file.
    const cont = api.diagnostics.scans.slice(mark).find((r) => r.from === 'disk');
    assert.ok(cont, `no scan continued from the cache file: ${JSON.stringify(api.diagnostics.scans.slice(mark))}`);
    assert.equal(cont.start, size);
    assert.equal(cont.scanned, grown - size, 'only the appended bytes were scanned');
    assert.equal(cont.offThread, true);
    assert.ok(!api.diagnostics.scans.slice(mark).some((r) => r.from === 'start'), 'nothing was scanned from the start');
  });
});
