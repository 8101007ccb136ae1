/**
 * The S3 target (see target.ts for the contract): @aws-sdk/client-s3 with
 * the SDK's default credential chain, path-style addressing when an endpoint
 * is given, and our own checksums (no SDK streaming-trailer checksums, which
 * Ceph RGW 16 refuses with 411). Every attempt the SDK sends is counted in
 * `stats.requests`, so a test (or a user with --verbose) sees what a push cost.
 */

import { DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { PloneBackupError } from '../base/errors';
import {
  DEFAULT_MULTIPART,
  MIN_PART,
  type RemoteListOptions,
  type ObjectChecksums,
  type RemoteTarget,
  type TargetOptions,
  hashBuffer,
  newStats,
  openNoFollow,
  resolveEndpoint,
} from './target';

interface SdkError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');

export class S3Target implements RemoteTarget {
  readonly stats = newStats();
  private readonly client: S3Client;
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
    return this.multipart(key, async () => (await openNoFollow(file)).createReadStream(), sums.size, signal);
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
    return this.multipart(key, async () => Readable.from(body), size, signal);
  }

  /**
   * A multipart upload of `size` bytes (no conditional complete on every
   * server): looked for first, as objects are never replaced; the size
   * checked after, as some servers (Ceph RGW) answer the completion with no
   * ETag (the SHA-256 is checked on every download). The body is opened
   * only when the object is not there yet.
   */
  private async multipart(key: string, open: () => Promise<Readable>, size: number, signal?: AbortSignal): Promise<'written' | 'exists'> {
    if (await this.head(key, signal)) {
      this.stats.existed++;
      return 'exists';
    }
    const up = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.key(key), Body: await open() },
      partSize: Math.max(MIN_PART, Math.min(this.threshold, 64 << 20)),
      queueSize: 4,
      leavePartsOnError: false,
    });
    const onAbort = () => void up.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await up.done();
    } catch (e) {
      throw this.failed('multipart upload', key, e);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    const h = await this.head(key, signal);
    if (h?.size !== size)
      throw new PloneBackupError('REMOTE_FAILED', `The multipart upload of ${key} to ${this.url} left ${h ? `${h.size} bytes` : 'nothing'}, not ${size}.`, {
        path: key,
        hint: 'Push again.',
      });
    this.stats.written++;
    this.stats.uploaded += size;
    return 'written';
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

function preconditionFailed(e: unknown): boolean {
  const err = e as SdkError;
  return err?.$metadata?.httpStatusCode === 412 || err?.name === 'PreconditionFailed';
}
