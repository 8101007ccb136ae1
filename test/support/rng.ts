/** A small seeded PRNG for the fuzz tests, and mutations of bytes. */
import { nth, xorByte } from './must';

/** A small seeded PRNG (mulberry32). */
export class Rng {
  constructor(private s: number) {}
  next(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<X>(a: readonly X[]): X {
    return nth(a, this.int(a.length));
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** A mutation of `src`: flipped bits, overwritten runs, cuts, insertions, big length fields. */
  mutate(src: Buffer, maxEdits = 4): Buffer {
    let b = Buffer.from(src);
    const edits = 1 + this.int(maxEdits);
    for (let e = 0; e < edits; e++) {
      const pos = b.length ? this.int(b.length) : 0;
      switch (this.int(7)) {
        case 0:
          if (b.length) xorByte(b, pos, 1 << this.int(8));
          break;
        case 1:
          if (b.length) b[pos] = this.int(256);
          break;
        case 2:
          b = b.subarray(0, pos);
          break;
        case 3:
          b = Buffer.concat([b.subarray(0, pos), this.bytes(1 + this.int(16)), b.subarray(pos)]);
          break;
        case 4:
          // an 8-byte big-endian length of 2^63, 2^53 or all ones
          if (b.length >= 8) {
            const at = this.int(b.length - 7);
            const v = this.pick([0x80n << 56n, 1n << 53n, 0xffffffffffffffffn, 0x7fffffffffffffffn]);
            b.writeBigUInt64BE(v, at);
          }
          break;
        case 5:
          if (b.length > 1) {
            const len = 1 + this.int(Math.min(64, b.length - pos));
            b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + len)]);
          }
          break;
        default:
          if (b.length) b.fill(this.pick([0, 0xff, 0x20]), pos, Math.min(b.length, pos + 1 + this.int(32)));
      }
    }
    return b;
  }
}
