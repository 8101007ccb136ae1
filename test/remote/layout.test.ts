/**
 * The remote manifest's check (layout.ts) on what version 2 added, as hostile
 * input: blob entries in packs (a pack that is no SHA-256, an offset that is
 * no count, a packed entry in a version 1 manifest) and incremental_blobs
 * archive chains (a delta first, a full archive inside, out of order, past
 * the generation, mixed with blob files, a name that could leave its folder).
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { MANIFEST_FORMAT, checkRemoteManifest } from '../../src/engine/internal';

const STAMP = '2026-06-01-12-00-00';
const OID = '00000000000000a1';
const TID = '03f0000000000001';
const SHA = 'ab'.repeat(32);

function manifest(extra: Record<string, unknown>, version = 2): Record<string, unknown> {
  return {
    format: MANIFEST_FORMAT,
    version,
    storage: 'main',
    stamp: STAMP,
    full: STAMP,
    pieces: [{ name: `${STAMP}.fsz`, start: 0, end: 10, md5: '0'.repeat(32), size: 10, sha256: SHA }],
    ...extra,
  };
}

const blobs = (files: unknown[]) => ({ blobs: { layout: 'bushy', count: files.length, bytes: 0, files } });
const check = (m: unknown) => checkRemoteManifest(m, (why) => new Error(why), 'main', STAMP);

describe('the remote manifest, version 2', () => {
  it('takes blob files in packs and of their own, and refuses a packed entry that is not sound', () => {
    check(manifest(blobs([[OID, TID, 0, SHA, SHA, 0]])));
    check(manifest(blobs([[OID, TID, 0, SHA]])));
    check(manifest(blobs([[OID, TID, 0, SHA]]), 1));
    assert.throws(() => check(manifest(blobs([[OID, TID, 0, SHA, SHA, 0]]), 1)), /blob entry/, 'version 1 has no packs');
    assert.throws(() => check(manifest(blobs([[OID, TID, 0, SHA, '../x', 0]]))), /blob entry/);
    assert.throws(() => check(manifest(blobs([[OID, TID, 0, SHA, SHA, -1]]))), /blob entry/);
    assert.throws(() => check(manifest(blobs([[OID, TID, 0, SHA, SHA]]))), /blob entry/);
    assert.throws(() => check(manifest({}, 3)), /version 1 or 2/);
  });

  it('takes an archive chain in order up to its own stamp, and refuses any other', () => {
    const a = (name: string) => ({ name, size: 1, sha256: SHA });
    check(manifest({ archives: [a('2026-06-01-10-00-00.tar.gz'), a('2026-06-01-11-00-00.delta.tar.gz'), a(`${STAMP}.delta.tar.gz`)] }));
    check(manifest({ archives: [a(`${STAMP}.tar`)] }));
    const refused: [unknown[], RegExp][] = [
      [[a(`${STAMP}.delta.tar`)], /delta at the start/],
      [[a('2026-06-01-10-00-00.tar'), a(`${STAMP}.tar`)], /full archive inside/],
      [[a('2026-06-01-11-00-00.tar'), a('2026-06-01-10-00-00.delta.tar'), a(`${STAMP}.delta.tar`)], /not in order/],
      [[a('2026-06-01-10-00-00.tar'), a('2026-06-01-11-00-00.delta.tar')], /up to its own stamp/],
      [[a('2026-06-01-10-00-00.tar'), a('2026-06-01-13-00-00.delta.tar')], /up to its own stamp/],
      [[a('../../etc/passwd')], /not a name/],
      [[], /chain of archives alone/],
    ];
    for (const [archives, why] of refused) assert.throws(() => check(manifest({ archives })), why, JSON.stringify(archives));
    assert.throws(() => check(manifest({ archives: [a(`${STAMP}.tar`)], ...blobs([]) })), /alone/);
    assert.throws(() => check(manifest({ archive: a(`${STAMP}.delta.tar`) })), /delta without its chain/);
  });
});
