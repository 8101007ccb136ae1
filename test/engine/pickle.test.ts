/**
 * Telling blob records: the class reference of a record's first pickle, in
 * every form Python's pickle writes it (checked against CPython's output).
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { BLOB_PICKLE, DATA_HDR_LEN, isBlobPickle, recordClass } from '../../src/engine';
import { stateJson, statePath } from '../support/fixtures';

// pickle.dumps(X, proto) for ZODB.blob.Blob, (Blob, None) and a subclass plone.namedfile.BlobSub, from CPython.
const CPYTHON: [string, string, boolean][] = [
  ['GLOBAL, protocol 1', '635a4f44422e626c6f620a426c6f620a71002e', true],
  ['GLOBAL in a tuple, protocol 1', '28635a4f44422e626c6f620a426c6f620a71004e7471012e', true],
  ['GLOBAL, protocol 2', '8002635a4f44422e626c6f620a426c6f620a71002e', true],
  ['GLOBAL, protocol 3', '8003635a4f44422e626c6f620a426c6f620a71002e', true],
  ['GLOBAL in a tuple, protocol 3', '8003635a4f44422e626c6f620a426c6f620a71004e8671012e', true],
  ['STACK_GLOBAL, protocol 4', '80049516000000000000008c095a4f44422e626c6f62948c04426c6f629493942e', true],
  ['STACK_GLOBAL in a tuple, protocol 4', '80049519000000000000008c095a4f44422e626c6f62948c04426c6f629493944e86942e', true],
  ['STACK_GLOBAL, protocol 5', '80059516000000000000008c095a4f44422e626c6f62948c04426c6f629493942e', true],
  ['a subclass, protocol 1', '63706c6f6e652e6e616d656466696c650a426c6f625375620a71002e', false],
  ['a subclass, protocol 3', '800363706c6f6e652e6e616d656466696c650a426c6f625375620a71002e', false],
  ['a subclass, protocol 4', '8004951f000000000000008c0f706c6f6e652e6e616d656466696c65948c07426c6f625375629493942e', false],
];

describe('pickle: blob records', () => {
  for (const [name, hex, blob] of CPYTHON) {
    it(`${name}: ${blob ? 'a blob' : 'not a blob'}`, () => {
      assert.equal(isBlobPickle(Buffer.from(hex, 'hex')), blob);
    });
  }

  it('names the class', () => {
    assert.deepEqual(recordClass(Buffer.from(CPYTHON[9][1], 'hex')), { module: 'plone.namedfile', name: 'BlobSub' });
    assert.deepEqual(recordClass(BLOB_PICKLE), { module: 'ZODB.blob', name: 'Blob' });
    assert.equal(isBlobPickle(BLOB_PICKLE), true);
  });

  it('other classes and garbage are not blobs', () => {
    for (const s of ['\x80\x03cZODB.blob\nBlobFile\nq\x00.', '\x80\x03cZODB.blobx\nBlob\nq\x00.', '\x80\x03cpersistent.mapping\nPersistentMapping\n.', '', '\x80', 'garbage', '\x80\x03c']) {
      assert.equal(isBlobPickle(Buffer.from(s, 'latin1')), false, JSON.stringify(s));
    }
  });

  it("agrees with ZODB's blob flags on every record of S3", () => {
    const b = fs.readFileSync(statePath(3));
    let blobs = 0;
    for (const t of stateJson(3).transactions) {
      for (const r of t.records) {
        if (r.plen === 0) continue;
        assert.equal(isBlobPickle(b.subarray(r.pos + DATA_HDR_LEN, r.pos + DATA_HDR_LEN + r.plen)), r.blob, `record at ${r.pos}`);
        if (r.blob) blobs++;
      }
    }
    assert.ok(blobs >= 4);
  });
});
