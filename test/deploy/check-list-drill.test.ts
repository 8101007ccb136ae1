/**
 * check, list and drill prove they see what is wrong and say where: check
 * reports a missing blob (an error on Data.fs with oid and tid), an
 * unreferenced blob (info), a missing .layout (warning), old tmp/ leftovers,
 * and in the backups a piece without generation, a generation lacking a file
 * and a corrupted piece; the CLI's --json output parses. list shows every
 * generation with stamp, full/incremental, transactions, last description
 * and user, and its blob status. drill passes on a good backup and fails,
 * naming the problem, when a generation lacks a blob.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  backupDeployment,
  checkDeployment,
  discoverDeployment,
  drillDeployment,
  type Finding,
  idRepr,
  listDeployment,
  LIVE_SCAN_FILE,
  newLiveScanCache,
  parseBlobRelPath,
} from '../../src/engine/internal';
import { referencedBlobs } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { content, copy, snapshot, tmpDir } from '../support/fs';
import { FIXTURES } from '../support/paths';
import { runCli } from '../support/processes';
import { generationFile, makeSite } from '../support/site';
import { nth, xorByte } from '../support/must';

const codes = (fs_: Finding[]) => fs_.map((f) => `${f.severity}:${f.code}`).sort();

describe('check', () => {
  it('a healthy deployment with backups has no findings', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    const dep = await discoverDeployment(root);
    await backupDeployment(dep, 'backup', { now: fakeClock().now });
    assert.deepEqual(await checkDeployment(dep), []);
    await s.site.close();
    const r = runCli(['check', '--dir', root, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out, { ok: true, findings: [] });
  });

  it('finds problems of the live site: missing blob, unreferenced blob, .layout, tmp leftovers', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 3 });
    const dep = await discoverDeployment(root);
    await backupDeployment(dep, 'backup', { now: fakeClock().now });
    await s.site.close();
    const refs = await referencedBlobs(s.file);
    // A referenced blob goes missing.
    const missing = nth(refs, 1);
    fs.rmSync(path.join(s.blobDir, missing));
    // A blob file no record references.
    const strayOid = Buffer.from('00000000000000ff', 'hex');
    const strayTid = Buffer.from('0405e91c6aaaaaaa', 'hex');
    const stray = `0x00/0x00/0x00/0x00/0x00/0x00/0x00/0xff/${idRepr(strayTid)}.blob`;
    fs.mkdirSync(path.dirname(path.join(s.blobDir, stray)), { recursive: true });
    fs.writeFileSync(path.join(s.blobDir, stray), 'orphan');
    // An old upload left in tmp/ and a fresh one (in progress).
    const old = path.join(s.blobDir, 'tmp', 'old-upload');
    fs.writeFileSync(old, 'x');
    fs.utimesSync(old, new Date(Date.now() - 3 * 3600_000), new Date(Date.now() - 3 * 3600_000));
    fs.writeFileSync(path.join(s.blobDir, 'tmp', 'fresh-upload'), 'y');

    // Nothing but its own scan cache beside the backups (livescan.test.ts).
    const ours = { skip: (rel: string) => rel.endsWith(LIVE_SCAN_FILE) };
    const before = snapshot(root, ours);
    const findings = await checkDeployment(dep, { liveOnly: true });
    assert.deepEqual(snapshot(root, ours), before, 'check changes nothing');
    assert.deepEqual(codes(findings), ['error:BLOB_MISSING', 'info:BLOB_UNREFERENCED', 'warning:TMP_LEFTOVERS'].sort());
    const miss = findings.find((f) => f.code === 'BLOB_MISSING')!;
    const id = parseBlobRelPath(missing, 'bushy')!;
    assert.equal(miss.file, s.file, 'attached to Data.fs');
    assert.equal(miss.oid, idRepr(id.oid));
    assert.equal(miss.tid, idRepr(id.tid));
    assert.equal(miss.storage, 'main');
    assert.ok(miss.message.includes(missing));
    assert.ok(miss.hint);
    const un = findings.find((f) => f.code === 'BLOB_UNREFERENCED')!;
    assert.equal(un.file, path.join(s.blobDir, stray));
    assert.equal(un.oid, idRepr(strayOid));
    assert.equal(un.tid, idRepr(strayTid));
    const tmp = findings.find((f) => f.code === 'TMP_LEFTOVERS')!;
    assert.equal(tmp.file, old);
    assert.match(tmp.message, /1 file older than an hour/);

    // The cache lets a second check continue where the first ended, with the same answer.
    const cache = newLiveScanCache();
    const a = await checkDeployment(dep, { liveOnly: true, cache });
    const b = await checkDeployment(dep, { liveOnly: true, cache });
    assert.deepEqual(codes(a), codes(b));

    // The CLI: exit 1 on errors; --json parses and carries the same findings.
    const r = runCli(['check', '--dir', root, '--json', '--live-only']);
    assert.equal(r.status, 1);
    const out = JSON.parse(r.stdout) as { ok: boolean; findings: Finding[] };
    assert.equal(out.ok, false);
    assert.deepEqual(codes(out.findings), codes(findings));
    const text = runCli(['check', '--dir', root, '--live-only']);
    assert.equal(text.status, 1);
    assert.match(text.stdout, /error: \[main\] The blob of oid/);
    assert.doesNotMatch(text.stdout, /info:/, 'notes only with --verbose');
  });

  it('a missing .layout is a warning; ZODB then guesses lawn for a bushy tree, which is an error', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    fs.rmSync(path.join(s.blobDir, '.layout'));
    const findings = await checkDeployment(await discoverDeployment(root), { liveOnly: true });
    const missing = findings.find((f) => f.code === 'LAYOUT_MISSING')!;
    assert.equal(missing.severity, 'warning');
    assert.equal(missing.file, path.join(s.blobDir, '.layout'));
    assert.match(missing.message, /guesses the blob layout \(lawn\)/);
    const wrong = findings.find((f) => f.code === 'LAYOUT_WRONG')!;
    assert.equal(wrong.severity, 'error');
    assert.match(wrong.hint!, /bushy/);
    // A lawn tree without .layout is guessed right: only the warning.
    const lawn = tmpDir(t);
    copy(path.join(FIXTURES, 'lawn'), path.join(lawn, 'var', 'filestorage'));
    fs.renameSync(path.join(lawn, 'var', 'filestorage', 'blobstorage'), path.join(lawn, 'var', 'blobstorage'));
    fs.rmSync(path.join(lawn, 'var', 'blobstorage', '.layout'), { force: true });
    const lf = await checkDeployment(await discoverDeployment(lawn), { liveOnly: true });
    assert.deepEqual(codes(lf), ['warning:LAYOUT_MISSING']);
  });

  it('a wrong .layout is an error', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    fs.writeFileSync(path.join(s.blobDir, '.layout'), 'lawn\n');
    const findings = await checkDeployment(await discoverDeployment(root), { liveOnly: true });
    assert.ok(codes(findings).includes('error:LAYOUT_WRONG'), codes(findings).join(' '));
  });

  it('finds problems of the backups: piece without generation, generation lacking a file, corrupted piece', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 2 });
    const dep = await discoverDeployment(root);
    // Trees, where a file removed from one generation leaves the others whole (in the pool it is
    // every generation's: blobpool.test.ts).
    dep.settings.blobFormat = 'dir';
    const clock = fakeClock();
    await backupDeployment(dep, 'backup', { now: clock.now });
    const refs1 = await referencedBlobs(s.file);
    await s.site.uploadFile('two.pdf', content('two'));
    const b2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    const lost = (await referencedBlobs(s.file)).find((r) => !refs1.includes(r))!;
    await s.site.uploadFile('three.pdf', content('three'));
    const b3 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    await s.site.addDocument('four');
    const b4 = nth(await backupDeployment(dep, 'fullbackup', { now: clock.now }), 0);
    await s.site.close();
    assert.deepEqual(await checkDeployment(dep), []);

    // b3's generation is lost; b2's lacks the file its piece added; b4's piece is corrupted.
    fs.rmSync(b3.blobGeneration!, { recursive: true });
    fs.rmSync(path.join(b2.blobGeneration!, 'blobstorage', lost));
    const piece1 = path.join(s.varDir, 'backups', b4.filestorage.piece!);
    const bytes = fs.readFileSync(piece1);
    xorByte(bytes, bytes.length - 12, 0xff); // inside the gzip data
    fs.writeFileSync(piece1, bytes);

    const findings = await checkDeployment(dep, { backupsOnly: true });
    const byCode = (c: string) => findings.filter((f) => f.code === c);
    assert.equal(byCode('PIECE_WITHOUT_BLOBS').length, 1);
    assert.equal(nth(byCode('PIECE_WITHOUT_BLOBS'), 0).file, path.join(s.varDir, 'backups', b3.filestorage.piece!));
    assert.equal(nth(byCode('PIECE_WITHOUT_BLOBS'), 0).severity, 'warning');
    const inc = byCode('GENERATION_INCOMPLETE');
    assert.equal(inc.length, 1, JSON.stringify(findings, null, 1));
    assert.equal(nth(inc, 0).severity, 'error');
    assert.equal(nth(inc, 0).file, b2.blobGeneration);
    assert.ok(nth(inc, 0).message.includes(lost));
    const bad = byCode('REPOSITORY_INVALID');
    assert.ok(bad.length >= 1);
    assert.ok(bad.every((f) => f.severity === 'error'));
    assert.ok(
      bad.some((f) => f.file === piece1),
      JSON.stringify(bad),
    );

    const r = runCli(['check', '--dir', root, '--json', '--backups-only']);
    assert.equal(r.status, 1);
    const out = JSON.parse(r.stdout) as { ok: boolean; findings: Finding[] };
    assert.equal(out.ok, false);
    assert.deepEqual(codes(out.findings), codes(findings));
    // verify says the same, and fails.
    const v = runCli(['verify', '--dir', root, '--json']);
    assert.equal(v.status, 1);
    const vo = JSON.parse(v.stdout) as { ok: boolean; problems: string[] };
    assert.equal(vo.ok, false);
    assert.ok(
      vo.problems.some((p) => p.includes(path.basename(b2.blobGeneration!))),
      vo.problems.join('\n'),
    );
  });

  it('no backup at all is a warning', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root);
    await s.site.close();
    const findings = await checkDeployment(await discoverDeployment(root));
    assert.deepEqual(codes(findings), ['warning:NO_BACKUP']);
  });
});

describe('list', () => {
  it('shows stamps, full/incremental, transactions, last description and user, blob status', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 2, files: 1 });
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    const b1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    await s.site.addDocument('News item', 'text', '/ jane');
    await s.site.uploadFile('photo.jpg', content('photo'), undefined, '/ joe');
    const b2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    await s.site.addDocument('Front page');
    const b3 = nth(await backupDeployment(dep, 'snapshot', { now: clock.now }), 0);
    await s.site.close();
    fs.rmSync(b2.blobGeneration!, { recursive: true });

    const views = await listDeployment(dep);
    assert.equal(views.length, 1);
    const v = nth(views, 0);
    assert.equal(v.storage, 'main');
    assert.equal(v.file, s.file);
    const backups = v.groups.find((g) => g.kind === 'backup')!;
    assert.equal(backups.chains.length, 1);
    const { full, incrementals } = nth(backups.chains, 0);
    assert.equal(full.stamp, b1.filestorage.stamp);
    assert.equal(full.full, true);
    assert.equal(full.transactions, b1.filestorage.transactions);
    assert.equal(full.blob.status, 'match');
    assert.equal(full.blob.files, 1);
    assert.equal(incrementals.length, 1);
    const inc = nth(incrementals, 0);
    assert.equal(inc.stamp, b2.filestorage.stamp);
    assert.equal(inc.full, false);
    assert.equal(inc.transactions, 2);
    assert.equal(inc.lastDescription, 'Uploaded photo.jpg');
    assert.equal(inc.lastUser, '/ joe');
    assert.equal(inc.blob.status, 'missing');
    assert.equal(inc.start, b1.filestorage.end);
    assert.equal(inc.end, b2.filestorage.end);
    const snap = v.groups.find((g) => g.kind === 'snapshot')!;
    assert.equal(nth(snap.chains, 0).full.stamp, b3.filestorage.stamp);
    assert.equal(nth(snap.chains, 0).full.lastDescription, 'Added Front page');
    assert.equal(nth(snap.chains, 0).full.blob.status, 'match');
    assert.equal(nth(snap.chains, 0).full.blob.files, 2);
    assert.deepEqual(v.groups.find((g) => g.kind === 'zip')!.chains, []);

    const r = runCli(['list', '--dir', root]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${b1.filestorage.stamp} full .*blobs: match`));
    assert.match(r.stdout, new RegExp(`${b2.filestorage.stamp} incremental .*2 transactions.*/ joe "Uploaded photo.jpg"; blobs: missing`));
    const j = runCli(['list', '--dir', root, '--json']);
    assert.equal(j.status, 0);
    const out = JSON.parse(j.stdout);
    assert.equal(out.storages[0].groups[0].chains[0].incrementals[0].stamp, b2.filestorage.stamp);
  });
});

describe('drill', () => {
  it('passes on a good backup and names the problem when a generation lacks a blob', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 3 });
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    await backupDeployment(dep, 'backup', { now: clock.now });
    await s.site.uploadFile('more.pdf', content('more'));
    const b2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    await s.site.close();
    const before = snapshot(root);
    const ok = nth(await drillDeployment(dep), 0);
    assert.ok(ok.ok, ok.problems.join('; '));
    assert.equal(ok.stamp, b2.filestorage.stamp);
    assert.equal(ok.blobFiles, 4);
    assert.equal(ok.blobRecords, 4);
    assert.ok(ok.indexOk);
    assert.equal(ok.bytes, b2.filestorage.end);
    assert.deepEqual(snapshot(root), before, 'a drill touches neither the site nor the backups');
    const all = await drillDeployment(dep, { all: true });
    assert.equal(all.length, 2);
    assert.ok(all.every((d) => d.ok));

    // The newest generation lacks a blob file: the drill fails and says which.
    const lost = (await referencedBlobs(s.file))[2]!;
    fs.rmSync(generationFile(b2.blobGeneration!, lost));
    const bad = nth(await drillDeployment(dep), 0);
    assert.equal(bad.ok, false);
    assert.ok(bad.problems.join(' ').includes(lost), bad.problems.join('; '));
    const r = runCli(['drill', '--dir', root, '--json']);
    assert.equal(r.status, 1);
    const out = JSON.parse(r.stdout);
    assert.equal(out.ok, false);
    const text = runCli(['drill', '--dir', root]);
    assert.equal(text.status, 1);
    assert.match(text.stdout, /FAILED/);
  });
});
