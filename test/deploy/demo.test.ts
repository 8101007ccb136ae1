/**
 * `plone-backup demo` (what `npm run demo` runs) proves the main job end to
 * end through the CLI bundle: a writer process commits while backups run,
 * then check, drill and two restores succeed; it exits 0, says what it did
 * and leaves no temp folder behind.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { runCli } from '../support/processes';

describe('demo', () => {
  it('runs the main job on a sample deployment with a live writer', () => {
    const tmpBefore = new Set(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('plone-backup-demo-')));
    const r = runCli(['demo']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = r.stdout;
    assert.match(out, /Writer started \(pid \d+\)/);
    assert.match(out, /backup +\d{4}(-\d\d){5} full .*transactions; blobs blobstorage\.\d{4}(-\d\d){5}\.json: \d+ files, \d+ new in the pool/);
    assert.match(out, /backup +\d{4}(-\d\d){5} incremental .*, \d+ new in the pool/);
    assert.match(out, /snapshot +\d{4}(-\d\d){5} full/);
    assert.match(out, /Writer stopped: \d+ commits/);
    assert.match(out, /check: the live site and every backup are consistent/);
    assert.match(out, /drill .*index matches, all \d+ blob files present/);
    assert.match(out, /restore to .* \(an earlier point\): full, .*every blob record has its file/);
    assert.match(out, /restore to the newest .*: incremental, appended/);
    assert.match(out, /^Done in /m);
    const left = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('plone-backup-demo-') && !tmpBefore.has(n));
    assert.deepEqual(left, []);
  });
});
