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
import * as path from 'node:path';
import { LIVE_SCAN_FILE } from '../../../src/engine/internal';
import { Command } from '../../../src/extension/commands';
import { done, exec, testWorkspace, waitFor, type TestWorkspace } from './host';
import type { PloneBackupApi } from '../../../src/extension/extension';

suite('The live scan: off the extension host, continued from its cache', function () {
  this.timeout(60_000);
  let api: PloneBackupApi;
  let var_: string;
  let dataFs: string;
  let w: TestWorkspace;

  suiteSetup(async () => {
    w = await testWorkspace('livescan', { empty: true });
    ({ dataFs, api } = w);
    var_ = w.varDir;
    assert.ok(api?.diagnostics, 'the test hooks are not there (PLONE_BACKUP_TEST_HOOKS=1 in the extension host?)');
  });

  suiteTeardown(() => {
    w?.dispose();
  });

  /**
   * The scans reported from now on. By identity, not by index: the list keeps
   * the latest 32 only, so after a full suite its length stays put.
   */
  const scansFrom = () => {
    const seen = new Set(api.diagnostics.scans);
    return () => api.diagnostics.scans.filter((r) => !seen.has(r));
  };

  test('a check scans in a worker and writes the cache; a new window scans only what was appended', async () => {
    // From before the site is made: an automatic check may scan it before the explicit one.
    const mine = scansFrom();
    await w.fresh({
      site: async (s) => {
        await s.addDocument('Front page');
        await s.uploadFile('report.pdf', crypto.randomBytes(3000));
      },
    });
    done(await exec(Command.backup), 'backup');

    done(await exec(Command.check), 'check');
    const size = fs.statSync(dataFs).size;
    const first = mine().find((r) => r.end === size);
    assert.ok(first, `no scan to the end of Data.fs among ${JSON.stringify(mine())}`);
    assert.equal(first.offThread, true, 'the scan ran in a worker thread');
    const cacheFile = path.join(var_, 'backups', LIVE_SCAN_FILE);
    assert.ok(fs.existsSync(cacheFile), 'the scan cache is written beside the backups (inside the workspace)');

    // New transactions; the automatic check they cause (if any) continues in memory
    // (and leaves the cache file where the first scan ended: a small step is not written).
    await w.commit(async (s) => {
      await s.addDocument('News');
      await s.uploadFile('logo.png', crypto.randomBytes(2000));
    });
    const grown = fs.statSync(dataFs).size;
    await waitFor(() => api.diagnostics.scans.some((r) => r.end === grown), 'the automatic check', 8_000).catch(() => undefined);
    await api.diagnostics.check([], { live: false, backups: false, quick: true }); // the queue drained
    // A new window: nothing in memory.
    api.diagnostics.cache.files.clear();
    const later = scansFrom();
    done(await exec(Command.check), 'check');
    // One of them continued from the file.
    const cont = later().find((r) => r.from === 'disk');
    assert.ok(cont, `no scan continued from the cache file: ${JSON.stringify(later())}`);
    assert.equal(cont.start, size);
    assert.equal(cont.scanned, grown - size, 'only the appended bytes were scanned');
    assert.equal(cont.offThread, true);
    assert.ok(!later().some((r) => r.from === 'start'), 'nothing was scanned from the start');
  });
});
