/**
 * The S3 target (see target.ts for the contract): @aws-sdk/client-s3 with
 * the SDK's default credential chain, path-style addressing when an endpoint
 * is given, and our own checksums (no SDK streaming-trailer checksums, which
 * Ceph RGW 16 refuses with 411). Every attempt the SDK sends is counted in
 * `stats.requests`, so a test (or a user with --verbose) sees what a push cost.
 *
 * Large objects go up as multipart uploads of our own (not lib-storage's
 * Upload, which cannot continue one): an upload that was interrupted (a
 * cancelled push, a killed process, a network that went away) is left on the
 * server, and the next push of that key continues it. It lists the key's
 * open uploads (ListMultipartUploads, ListParts), takes the one holding the
 * most bytes in parts of one size, reads the source again part by part and
 * sends only the parts the server does not hold with that size and that MD5
 * (a part's ETag is its MD5; a part that differs is sent again, replacing
 * it), then completes it; the key's other open uploads are aborted once the
 * object is there. Each part carries its Content-MD5. An encrypted object is
 * sealed the same way every time (crypt.ts), so its parts match too.
 */

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { PloneBackupError, checkAbort } from '../base/errors';
import {
  DEFAULT_MULTIPART,
  MIN_PART,
  type RemoteListOptions,
  type ObjectChecksums,
  type RemoteTarget,
  type TargetOptions,
  type UnfinishedWrite,
  hashBuffer,
  newStats,
  openNoFollow,
  resolveEndpoint,
  shortRange,
} from './target';

interface SdkError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
const unquote = (etag: string) => etag.replace(/^"|"$/g, '').toLowerCase();
/** S3's most parts in an upload, and the parts sent at once. */
const MAX_PARTS = 10_000;
const PART_QUEUE = 4;

export class S3Target implements RemoteTarget {
  readonly stats = newStats();
  /** The SDK's client (a test instruments it with a middleware: what was sent, and when to stop). */
  readonly client: S3Client;
  private readonly threshold: number;
  private readonly endpoint?: string;

  constructor(
    readonly url: string,
    private readonly bucket: string,
    private readonly prefix: string,
    opts: TargetOptions,
  ) {
    const env = opts.env ?? process.env;
    this.endpoint = resolveEndpoint(opts);
    const config: S3ClientConfig = {
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 4,
    };
    const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || (this.endpoint ? 'us-east-1' : undefined);
    if (region) config.region = region;
    if (opts.credentials) config.credentials = { ...opts.credentials };
    if (this.endpoint) {
      config.endpoint = this.endpoint;
      config.forcePathStyle = true;
    }
    this.client = new S3Client(config);
    // Below the retry middleware: one count per attempt actually sent.
    this.client.middlewareStack.add(
      (next) => async (args) => {
        this.stats.requests++;
        return next(args);
      },
      { step: 'deserialize', name: 'ploneBackupRequestCounter' },
    );
    this.threshold = Math.max(MIN_PART, opts.multipartThreshold ?? DEFAULT_MULTIPART);
  }

  private key(k: string): string {
    return this.prefix ? `${this.prefix}/${k}` : k;
  }

  async list(prefix: string, signal?: AbortSignal, opts: RemoteListOptions = {}): Promise<string[]> {
    // The root of a prefix is `PREFIX/`; of a bucket, the bucket.
    const full = prefix === '' ? (this.prefix ? `${this.prefix}/` : '') : this.key(prefix);
    const limit = opts.limit ?? Infinity;
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await this.send('list', prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: full,
            Delimiter: opts.recursive ? undefined : '/',
            ContinuationToken: token,
            MaxKeys: Number.isFinite(limit) ? Math.min(1000, limit) : undefined,
          }),
          { abortSignal: signal },
        ),
      );
      for (const o of r.Contents ?? []) if (o.Key && o.Key.startsWith(full) && out.length < limit) out.push(o.Key.slice(full.length));
      token = r.IsTruncated && out.length < limit ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async head(key: string, signal?: AbortSignal): Promise<{ size: number } | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(key) }), { abortSignal: signal });
      return { size: r.ContentLength ?? 0 };
    } catch (e) {
      if (notFound(e)) return undefined;
      throw this.failed('HEAD', key, e);
    }
  }

  async get(key: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer | undefined> {
    let r;
    try {
      r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(key) }), { abortSignal: signal });
    } catch (e) {
      if (notFound(e)) return undefined;
      throw this.failed('GET', key, e);
    }
    if ((r.ContentLength ?? 0) > maxBytes) {
      (r.Body as { destroy?: () => void } | undefined)?.destroy?.();
      throw new PloneBackupError('REMOTE_BAD', `The remote object ${key} in ${this.url} is ${r.ContentLength} bytes, more than the ${maxBytes} it can sensibly be.`, {
        path: key,
        hint: 'Remove it from the remote, then push again.',
      });
    }
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of r.Body as AsyncIterable<Uint8Array>) {
      n += c.byteLength;
      if (n > maxBytes)
        throw new PloneBackupError('REMOTE_BAD', `The remote object ${key} in ${this.url} grew past ${maxBytes} bytes while it was read.`, {
          path: key,
          hint: 'Remove it from the remote, then push again.',
        });
      chunks.push(Buffer.from(c));
    }
    this.stats.downloaded += n;
    return Buffer.concat(chunks);
  }

  async stream(key: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const r = await this.send('GET', key, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(key) }), { abortSignal: signal }));
    if (!r.Body) throw new PloneBackupError('REMOTE_BAD', `The remote object ${key} in ${this.url} came without a body.`, { path: key });
    return r.Body as AsyncIterable<Uint8Array>;
  }

  async getRange(key: string, start: number, end: number, signal?: AbortSignal): Promise<Buffer | undefined> {
    if (end <= start) return Buffer.alloc(0);
    let r;
    try {
      r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(key), Range: `bytes=${start}-${end - 1}` }), { abortSignal: signal });
    } catch (e) {
      if (notFound(e)) return undefined;
      // 416: the object is shorter than the range starts.
      if ((e as SdkError).$metadata?.httpStatusCode === 416) throw shortRange(this.url, key, start, end);
      throw this.failed('GET', key, e);
    }
    const want = end - start;
    const out = Buffer.allocUnsafe(want);
    let n = 0;
    for await (const c of r.Body as AsyncIterable<Uint8Array>) {
      if (n + c.byteLength > want) {
        (r.Body as { destroy?: () => void }).destroy?.();
        throw shortRange(this.url, key, start, end); // a server that ignored the range
      }
      out.set(c, n);
      n += c.byteLength;
    }
    this.stats.downloaded += n;
    if (n !== want) throw shortRange(this.url, key, start, end);
    return out;
  }

  async put(key: string, body: Buffer, sums: ObjectChecksums, signal?: AbortSignal): Promise<'written' | 'exists'> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(key),
          Body: body,
          ContentLength: body.length,
          ContentMD5: sums.md5 ? b64(sums.md5) : undefined,
          ChecksumSHA256: b64(sums.sha256),
          IfNoneMatch: '*',
        }),
        { abortSignal: signal },
      );
    } catch (e) {
      if (preconditionFailed(e)) {
        this.stats.existed++;
        return 'exists';
      }
      throw this.failed('PUT', key, e);
    }
    this.stats.written++;
    this.stats.uploaded += body.length;
    return 'written';
  }

  async upload(key: string, file: string, sums: ObjectChecksums, signal?: AbortSignal): Promise<'written' | 'exists'> {
    if (sums.size < this.threshold) {
      const fh = await openNoFollow(file);
      let body: Buffer;
      try {
        body = await fh.readFile({ signal });
      } finally {
        await fh.close();
      }
      if (body.length !== sums.size) throw new PloneBackupError('SOURCE_CHANGED', `${file} changed while it was pushed.`, { path: file, hint: 'Push again.' });
      return this.put(key, body, sums, signal);
    }
    return this.multipart(
      key,
      async (use) => {
        const fh = await openNoFollow(file);
        try {
          await use(fh.createReadStream({ highWaterMark: 1 << 20, autoClose: false, signal }));
        } finally {
          await fh.close();
        }
      },
      sums.size,
      signal,
    );
  }

  async uploadStream(key: string, size: number, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<'written' | 'exists'> {
    if (size < this.threshold) {
      // Small: one PUT with its Content-MD5, so the body is gathered (at most the threshold).
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of body) {
        n += c.byteLength;
        if (n > size) break;
        chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      }
      if (n !== size) throw new PloneBackupError('SOURCE_CHANGED', `${key}: ${n} bytes came, not ${size}.`, { path: key, hint: 'Push again.' });
      const b = Buffer.concat(chunks);
      return this.put(key, b, hashBuffer(b), signal);
    }
    return this.multipart(key, async (use) => use(body), size, signal);
  }

  /** The part size of a new upload of `size` bytes: at least S3's minimum, at most 10,000 parts. */
  private partSizeFor(size: number): number {
    return Math.max(MIN_PART, Math.min(this.threshold, 16 << 20), Math.ceil(size / MAX_PARTS));
  }

  /** The open multipart uploads of a key (full key), oldest first. */
  private async openUploads(full: string, key: string, signal?: AbortSignal): Promise<{ id: string; initiated: number }[]> {
    const out: { id: string; initiated: number }[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (let page = 0; page < 100; page++) {
      const r = await this.send('list of uploads', key, () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: full, KeyMarker: keyMarker, UploadIdMarker: idMarker }), { abortSignal: signal }),
      );
      for (const u of r.Uploads ?? []) if (u.Key === full && u.UploadId) out.push({ id: u.UploadId, initiated: u.Initiated?.getTime() ?? 0 });
      if (!r.IsTruncated) break;
      keyMarker = r.NextKeyMarker;
      idMarker = r.NextUploadIdMarker;
    }
    return out.sort((a, b) => a.initiated - b.initiated);
  }

  /** The parts of an open upload: number → size and MD5 (hex); undefined when the upload is gone. */
  private async partsOf(full: string, key: string, id: string, signal?: AbortSignal): Promise<Map<number, { size: number; md5: string }> | undefined> {
    const parts = new Map<number, { size: number; md5: string }>();
    let marker: string | undefined;
    for (let page = 0; page < 20; page++) {
      let r;
      try {
        r = await this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: full, UploadId: id, PartNumberMarker: marker }), { abortSignal: signal });
      } catch (e) {
        if (noSuchUpload(e)) return undefined;
        throw this.failed('list of parts', key, e);
      }
      for (const p of r.Parts ?? []) if (p.PartNumber && p.Size !== undefined && p.ETag) parts.set(p.PartNumber, { size: p.Size, md5: unquote(p.ETag) });
      if (!r.IsTruncated || !r.NextPartNumberMarker) break;
      marker = r.NextPartNumberMarker;
    }
    return parts;
  }

  /**
   * The upload to continue: of the key's open uploads, the one whose parts
   * (all but the last of one size, fit for `size` bytes) hold the most bytes.
   */
  private async resumable(
    full: string,
    key: string,
    size: number,
    signal?: AbortSignal,
  ): Promise<{ all: string[]; best?: { id: string; partSize: number; parts: Map<number, { size: number; md5: string }> } }> {
    const uploads = await this.openUploads(full, key, signal);
    let best: { id: string; partSize: number; parts: Map<number, { size: number; md5: string }>; bytes: number } | undefined;
    for (const u of uploads) {
      const parts = await this.partsOf(full, key, u.id, signal);
      if (!parts) continue;
      const partSize = parts.get(1)?.size ?? 0;
      if (partSize < MIN_PART || Math.ceil(size / partSize) > MAX_PARTS) continue;
      const count = Math.ceil(size / partSize);
      let bytes = 0;
      for (const [n, p] of parts) if (n <= count && p.size === (n < count ? partSize : size - partSize * (count - 1))) bytes += p.size;
      if (!best || bytes >= best.bytes) best = { id: u.id, partSize, parts, bytes };
    }
    return { all: uploads.map((u) => u.id), best };
  }

  /**
   * A multipart upload of `size` bytes (see the header): looked for first,
   * as objects are never replaced; an interrupted upload of the key
   * continued; the size checked after, as some servers (Ceph RGW) answer the
   * completion with no ETag (the SHA-256 is checked on every download). The
   * body is opened only when the object is not there yet.
   */
  private async multipart(
    key: string,
    open: (use: (body: AsyncIterable<Uint8Array>) => Promise<void>) => Promise<void>,
    size: number,
    signal?: AbortSignal,
  ): Promise<'written' | 'exists'> {
    if (await this.head(key, signal)) {
      this.stats.existed++;
      return 'exists';
    }
    const full = this.key(key);
    const { all, best } = await this.resumable(full, key, size, signal);
    const partSize = best?.partSize ?? this.partSizeFor(size);
    const had = best?.parts ?? new Map<number, { size: number; md5: string }>();
    let id = best?.id;
    if (id === undefined) {
      const r = await this.send('multipart upload', key, () => this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: full }), { abortSignal: signal }));
      if (!r.UploadId) throw new PloneBackupError('REMOTE_FAILED', `The server started no multipart upload of ${key} in ${this.url}.`, { path: key, hint: 'Push again.' });
      id = r.UploadId;
    }
    const uploadId = id;
    const { etags, total } = await this.sendParts(key, uploadId, open, partSize, had, size, signal);
    checkAbort(signal);
    if (total !== size) throw new PloneBackupError('SOURCE_CHANGED', `${key}: ${total > size ? 'more than' : total} bytes came, not ${size}.`, { path: key, hint: 'Push again.' });
    try {
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: full, UploadId: uploadId, MultipartUpload: { Parts: etags } }), {
        abortSignal: signal,
      });
    } catch (e) {
      // Completed meanwhile by a push running at the same time (the same bytes): the object is there.
      if (!noSuchUpload(e)) throw this.failed('completion of the multipart upload', key, e);
    }
    const h = await this.head(key, signal);
    if (h?.size !== size)
      throw new PloneBackupError('REMOTE_FAILED', `The multipart upload of ${key} to ${this.url} left ${h ? `${h.size} bytes` : 'nothing'}, not ${size}.`, {
        path: key,
        hint: 'Push again.',
      });
    // The object is there: the key's other open uploads (a dead push's) can never be of use.
    for (const other of all)
      if (other !== uploadId)
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: full, UploadId: other }), { abortSignal: signal }).catch(() => undefined);
    this.stats.written++;
    return 'written';
  }

  /**
   * Reads the body part by part (PART_QUEUE parts in flight) and sends each
   * part the upload does not hold with that size and MD5; the parts' ETags
   * in order, and the bytes read (at most `size` and one more chunk).
   */
  private async sendParts(
    key: string,
    uploadId: string,
    open: (use: (body: AsyncIterable<Uint8Array>) => Promise<void>) => Promise<void>,
    partSize: number,
    had: Map<number, { size: number; md5: string }>,
    size: number,
    signal?: AbortSignal,
  ): Promise<{ etags: { PartNumber: number; ETag: string }[]; total: number }> {
    const full = this.key(key);
    const etags: { PartNumber: number; ETag: string }[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const sendPart = async (n: number, part: Buffer) => {
      const md5 = createHash('md5').update(part).digest('hex');
      const there = had.get(n);
      if (there && there.size === part.length && there.md5 === md5) {
        this.stats.resumed += part.length;
        etags.push({ PartNumber: n, ETag: `"${md5}"` });
        return;
      }
      const r = await this.send('upload of a part', key, () =>
        this.client.send(
          new UploadPartCommand({ Bucket: this.bucket, Key: full, UploadId: uploadId, PartNumber: n, Body: part, ContentLength: part.length, ContentMD5: b64(md5) }),
          {
            abortSignal: signal,
          },
        ),
      );
      this.stats.parts++;
      this.stats.uploaded += part.length;
      etags.push({ PartNumber: n, ETag: r.ETag ?? `"${md5}"` });
    };
    const queue = async (n: number, part: Buffer) => {
      while (inFlight.size >= PART_QUEUE) await Promise.race(inFlight);
      if (failure !== undefined) throw failure;
      const p: Promise<void> = sendPart(n, part)
        .catch((e: unknown) => void (failure ??= e))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    };
    let total = 0;
    try {
      await open(async (body) => {
        let n = 1;
        let buf = Buffer.allocUnsafe(partSize);
        let at = 0;
        for await (const c of body) {
          checkAbort(signal);
          let b = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
          total += b.length;
          if (total > size) break;
          while (b.length) {
            const k = Math.min(b.length, partSize - at);
            b.copy(buf, at, 0, k);
            at += k;
            b = b.subarray(k);
            if (at === partSize) {
              await queue(n++, buf);
              buf = Buffer.allocUnsafe(partSize);
              at = 0;
            }
          }
        }
        if (total === size && (at > 0 || n === 1)) await queue(n, buf.subarray(0, at));
      });
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;
    } catch (e) {
      await Promise.allSettled(inFlight);
      // The upload stays: the next push continues it (see the header).
      throw PloneBackupError.is(e) ? e : this.failed('multipart upload', key, e);
    }
    return { etags: etags.sort((a, b) => a.PartNumber - b.PartNumber), total };
  }

  async delete(keys: string[], signal?: AbortSignal): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const r = await this.send('delete', batch[0]!, () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((k) => ({ Key: this.key(k) })), Quiet: true } }), { abortSignal: signal }),
      );
      const err = r.Errors?.find((e) => e.Code !== 'NoSuchKey');
      if (err)
        throw new PloneBackupError('REMOTE_FAILED', `The delete of ${err.Key ?? 'an object'} in ${this.url} failed: ${err.Code ?? 'error'}.`, {
          path: err.Key,
          hint: 'Check that the credentials may delete in this bucket, then run it again.',
        });
    }
  }

  /** The open uploads below the prefix that no live push continues (see target.ts's RemoteTarget), oldest first. */
  async unfinishedWrites(olderThanMs: number, signal?: AbortSignal): Promise<UnfinishedWrite[]> {
    const root = this.prefix ? `${this.prefix}/` : '';
    const all: UnfinishedWrite[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const r = await this.send('list of uploads', root, () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: root, KeyMarker, UploadIdMarker }), { abortSignal: signal }),
      );
      for (const u of r.Uploads ?? []) if (u.Key?.startsWith(root) && u.UploadId) all.push({ key: u.Key.slice(root.length), id: u.UploadId, started: u.Initiated?.getTime() ?? 0 });
      if (!r.IsTruncated) break;
      ({ NextKeyMarker: KeyMarker, NextUploadIdMarker: UploadIdMarker } = r);
    }
    const cutoff = Date.now() - olderThanMs;
    const out: UnfinishedWrite[] = [];
    for (const u of all.sort((a, b) => a.started - b.started)) if (u.started < cutoff || (await this.head(u.key, signal))) out.push(u);
    return out;
  }

  async discardWrites(writes: UnfinishedWrite[], signal?: AbortSignal): Promise<void> {
    for (const u of writes)
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key(u.key), UploadId: u.id }), { abortSignal: signal }).catch((e: unknown) => {
        if (!noSuchUpload(e)) throw this.failed('abort of the upload', u.key, e);
      });
  }

  private async send<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.failed(op, key, e);
    }
  }

  /** An SDK error as ours: the operation, the key and the server's code, never a credential. */
  private failed(op: string, key: string, e: unknown): PloneBackupError {
    if (PloneBackupError.is(e)) return e;
    const err = e as SdkError;
    if (err?.name === 'AbortError') return new PloneBackupError('ABORTED', 'The operation was cancelled.', { cause: e });
    const status = err?.$metadata?.httpStatusCode;
    const code = err?.Code ?? err?.name ?? err?.code ?? 'error';
    const where = this.endpoint ? ` (endpoint ${this.endpoint})` : '';
    let hint = 'Check the remote URL, the endpoint and the network, then run it again.';
    if (/InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|CredentialsProviderError|ExpiredToken/.test(code) || status === 403) {
      hint = 'Check the credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile in AWS_PROFILE (~/.aws/credentials), and that they may use this bucket.';
    } else if (code === 'NoSuchBucket') hint = 'Create the bucket first (the push never creates one).';
    else if (/Region/i.test(err?.message ?? '')) hint = "Set AWS_REGION (or the profile's region), or give the server with --endpoint / remote.endpoint.";
    else if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT/.test(`${err?.code ?? ''} ${err?.message ?? ''}`))
      hint = 'The server cannot be reached: check --endpoint / remote.endpoint / AWS_ENDPOINT_URL_S3.';
    return new PloneBackupError('REMOTE_FAILED', `The ${op} of ${key} in ${this.url}${where} failed: ${code}${status ? ` (HTTP ${status})` : ''}.`, { path: key, hint, cause: e });
  }

  close(): void {
    this.client.destroy();
  }
}

function notFound(e: unknown): boolean {
  const err = e as SdkError;
  return err?.name === 'NotFound' || err?.name === 'NoSuchKey' || err?.$metadata?.httpStatusCode === 404;
}

function noSuchUpload(e: unknown): boolean {
  const err = e as SdkError;
  return err?.name === 'NoSuchUpload' || err?.Code === 'NoSuchUpload';
}

function preconditionFailed(e: unknown): boolean {
  const err = e as SdkError;
  return err?.$metadata?.httpStatusCode === 412 || err?.name === 'PreconditionFailed';
}
