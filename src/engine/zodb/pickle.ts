/**
 * The small part of Python's pickle format the engine needs: the opcodes that
 * fsIndex.save writes (protocol 3, "fast" mode: no memo), read back
 * symmetrically, and a look at a record's first pickle to tell a blob record.
 *
 * This is not a general unpickler. Anything outside the supported opcodes is
 * a typed error, never a guess: a foreign file must fail loudly, not load as
 * garbage.
 */

import { PloneBackupError } from '../base/errors';

const PROTO = 0x80;
const FRAME = 0x95;
const STOP = 0x2e; // '.'
const NONE = 0x4e; // 'N'
const BININT = 0x4a; // 'J' 4-byte signed LE
const BININT1 = 0x4b; // 'K'
const BININT2 = 0x4d; // 'M'
const LONG1 = 0x8a;
const LONG4 = 0x8b;
const SHORT_BINBYTES = 0x43; // 'C'
const BINBYTES = 0x42; // 'B'
const BINBYTES8 = 0x8e;
const SHORT_BINSTRING = 0x55; // 'U' (Python 2 str)
const BINSTRING = 0x54; // 'T'
const TUPLE2 = 0x86;
const MARK = 0x28; // '('
const TUPLE = 0x74; // 't'
const BINPUT = 0x71; // 'q'
const LONG_BINPUT = 0x72; // 'r'
const MEMOIZE = 0x94;
const GLOBAL = 0x63; // 'c'
const STACK_GLOBAL = 0x93;
const SHORT_BINUNICODE = 0x8c;
const BINUNICODE = 0x58; // 'X'

export type PickleValue = number | Buffer | null | PickleValue[];

// ---------------------------------------------------------------------------
// Encoding (what fsIndex.save writes with protocol 3 and pickler.fast = True)

function encodeInt(n: number): Buffer {
  if (!Number.isSafeInteger(n)) throw new RangeError(`cannot pickle ${n}`);
  if (n >= 0 && n < 0x100) return Buffer.from([BININT1, n]);
  if (n >= 0 && n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = BININT2;
    b.writeUInt16LE(n, 1);
    return b;
  }
  if (n >= -0x80000000 && n <= 0x7fffffff) {
    const b = Buffer.alloc(5);
    b[0] = BININT;
    b.writeInt32LE(n, 1);
    return b;
  }
  // LONG1: little-endian two's complement, as few bytes as Python's encode_long uses.
  let big = BigInt(n);
  const bytes: number[] = [];
  const negative = big < 0n;
  const bitLength = (negative ? -big - 1n : big).toString(2).length;
  const nbytes = (bitLength >> 3) + 1;
  for (let i = 0; i < nbytes; i++) {
    bytes.push(Number(big & 0xffn));
    big >>= 8n;
  }
  if (negative && nbytes > 1 && bytes[nbytes - 1] === 0xff && (bytes[nbytes - 2]! & 0x80) !== 0) bytes.pop();
  return Buffer.from([LONG1, bytes.length, ...bytes]);
}

function encodeBytes(b: Buffer): Buffer {
  if (b.length < 0x100) return Buffer.concat([Buffer.from([SHORT_BINBYTES, b.length]), b]);
  const h = Buffer.alloc(5);
  h[0] = BINBYTES;
  h.writeUInt32LE(b.length, 1);
  return Buffer.concat([h, b]);
}

function encodeValue(v: PickleValue, out: Buffer[]): void {
  if (v === null) out.push(Buffer.from([NONE]));
  else if (typeof v === 'number') out.push(encodeInt(v));
  else if (Buffer.isBuffer(v)) out.push(encodeBytes(v));
  else if (Array.isArray(v) && v.length === 2) {
    encodeValue(v[0]!, out);
    encodeValue(v[1]!, out);
    out.push(Buffer.from([TUPLE2]));
  } else throw new TypeError('unsupported value for pickling');
}

/** One complete protocol-3 pickle of `v` (PROTO 3 ... STOP), as Python's fast pickler writes it. */
export function dumpPickle(v: PickleValue): Buffer {
  const parts: Buffer[] = [Buffer.from([PROTO, 3])];
  encodeValue(v, parts);
  parts.push(Buffer.from([STOP]));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------
// Decoding

export interface LoadResult {
  value: PickleValue;
  /** Offset just after the STOP opcode. */
  end: number;
}

/**
 * Loads one pickle starting at `offset`. `what` names the file in errors.
 * Supports the opcodes an fsIndex stream can hold (also from protocol 2 and 4
 * writers): ints, bytes/str, tuples, None and memo bookkeeping.
 */
export function loadPickle(buf: Buffer, offset: number, what = 'pickle'): LoadResult {
  const stack: PickleValue[] = [];
  // Where each open MARK sits in `stack`: a TUPLE takes everything above the
  // last one in a single splice, so building a tuple costs its width, not its
  // width squared (a 300 KB pickle of one wide tuple took 9.5 s with shifting).
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  let p = offset;
  const bad = (why: string): never => {
    throw new PloneBackupError('INDEX_BAD', `${what} is not a ZODB index: ${why} at byte ${p}.`, {
      path: what,
      position: p,
      hint: 'Delete it; it is rebuilt from Data.fs.',
    });
  };
  const need = (n: number) => {
    if (p + n > buf.length) bad('it ends in the middle of a pickle');
  };
  const pop = (): PickleValue => {
    if (stack.length === 0) bad('stack underflow');
    if (marks.length && stack.length === marks[marks.length - 1]) bad('unexpected mark');
    return stack.pop()!;
  };
  // An index pickle holds a handful of values; more open values than this is
  // a crafted file, refused before it can cost memory in proportion to its length.
  const peek = (): PickleValue => {
    if (stack.length === 0 || (marks.length && stack.length === marks[marks.length - 1])) bad('nothing to memoize');
    return stack[stack.length - 1]!;
  };
  const room = () => {
    if (stack.length + marks.length + memo.size >= MAX_STACK) bad(`more than ${MAX_STACK} values are open or memoized at once`);
  };
  for (;;) {
    need(1);
    const op = buf[p++]!;
    room();
    switch (op) {
      case PROTO:
        need(1);
        if (buf[p]! > 5) bad(`unknown protocol ${buf[p]}`);
        p += 1;
        break;
      case FRAME:
        need(8);
        p += 8; // frames only group opcodes; the bytes follow in line
        break;
      case STOP: {
        const value = pop();
        if (stack.length !== 0 || marks.length !== 0) bad('extra values before STOP');
        return { value, end: p };
      }
      case NONE:
        stack.push(null);
        break;
      case BININT1:
        need(1);
        stack.push(buf[p]!);
        p += 1;
        break;
      case BININT2:
        need(2);
        stack.push(buf.readUInt16LE(p));
        p += 2;
        break;
      case BININT:
        need(4);
        stack.push(buf.readInt32LE(p));
        p += 4;
        break;
      case LONG1:
      case LONG4: {
        let n: number;
        if (op === LONG1) {
          need(1);
          n = buf[p]!;
          p += 1;
        } else {
          need(4);
          n = buf.readUInt32LE(p);
          p += 4;
        }
        if (n > 8) bad('integer too large');
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[p + i]!);
        if (n > 0 && buf[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) bad('integer too large');
        stack.push(Number(v));
        break;
      }
      case SHORT_BINBYTES:
      case SHORT_BINSTRING: {
        need(1);
        const n = buf[p]!;
        p += 1;
        need(n);
        stack.push(buf.subarray(p, p + n));
        p += n;
        break;
      }
      case BINBYTES:
      case BINSTRING: {
        need(4);
        const n = op === BINSTRING ? buf.readInt32LE(p) : buf.readUInt32LE(p);
        p += 4;
        if (n < 0) bad('negative length');
        need(n);
        stack.push(buf.subarray(p, p + n));
        p += n;
        break;
      }
      case BINBYTES8: {
        need(8);
        const hi = buf.readUInt32LE(p + 4);
        const n = buf.readUInt32LE(p) + hi * 2 ** 32;
        p += 8;
        if (hi >= 0x200000) bad('length too large');
        need(n);
        stack.push(buf.subarray(p, p + n));
        p += n;
        break;
      }
      case TUPLE2: {
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case MARK:
        marks.push(stack.length);
        break;
      case TUPLE: {
        if (marks.length === 0) bad('tuple without mark');
        stack.push(stack.splice(marks.pop()!));
        break;
      }
      case BINPUT:
        need(1);
        memo.set(buf[p]!, peek());
        p += 1;
        break;
      case LONG_BINPUT:
        need(4);
        memo.set(buf.readUInt32LE(p), peek());
        p += 4;
        break;
      case MEMOIZE:
        memo.set(memo.size, peek());
        break;
      default:
        bad(`unsupported opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** Values, marks and memo entries of one pickle at once (an index pickle needs four). */
export const MAX_STACK = 1 << 16;

// ---------------------------------------------------------------------------
// The class of a ZODB record

/**
 * The (module, name) of the class a ZODB record's first pickle names, or
 * undefined when it names none we can see. ZODB writes the class either as
 * GLOBAL ("c" module\n name\n) or, from zodbpickle protocol 3+, as
 * STACK_GLOBAL after two unicode strings; sometimes inside a (class, args)
 * tuple. The first global reference in the first pickle is the class.
 */
export function recordClass(pickle: Buffer): { module: string; name: string } | undefined {
  let p = 0;
  const strings: string[] = [];
  const limit = Math.min(pickle.length, 512); // the class comes first; never scan a whole big pickle
  while (p < limit) {
    const op = pickle[p++];
    switch (op) {
      case PROTO:
        p += 1;
        break;
      case FRAME:
        p += 8;
        break;
      case MARK:
      case NONE:
      case MEMOIZE:
      case 0x29: // EMPTY_TUPLE
        break;
      case BINPUT:
        p += 1;
        break;
      case LONG_BINPUT:
        p += 4;
        break;
      case GLOBAL: {
        const nl1 = pickle.indexOf(0x0a, p);
        if (nl1 < 0) return undefined;
        const nl2 = pickle.indexOf(0x0a, nl1 + 1);
        if (nl2 < 0) return undefined;
        return { module: pickle.toString('latin1', p, nl1), name: pickle.toString('latin1', nl1 + 1, nl2) };
      }
      case SHORT_BINUNICODE: {
        if (p >= pickle.length) return undefined;
        const n = pickle[p]!;
        strings.push(pickle.toString('utf8', p + 1, p + 1 + n));
        p += 1 + n;
        break;
      }
      case BINUNICODE: {
        if (p + 4 > pickle.length) return undefined;
        const n = pickle.readUInt32LE(p);
        strings.push(pickle.toString('utf8', p + 4, p + 4 + n));
        p += 4 + n;
        break;
      }
      case STACK_GLOBAL:
        if (strings.length < 2) return undefined;
        return { module: strings[strings.length - 2]!, name: strings[strings.length - 1]! };
      default:
        return undefined;
    }
  }
  return undefined;
}

/** True when a record's pickle is a ZODB.blob.Blob (exactly; subclasses are not). */
export function isBlobPickle(pickle: Buffer): boolean {
  const c = recordClass(pickle);
  return c !== undefined && c.module === 'ZODB.blob' && c.name === 'Blob';
}
