/**
 * Indexing that says what was missing. The tests compile with
 * noUncheckedIndexedAccess: an element read by index may be absent, and a
 * test that expects it there asserts so here, failing with a clear message
 * instead of a TypeError some lines later.
 */

/** Element `i` of `arr` (negative: from the end), which must be there. */
export function nth<T>(arr: ArrayLike<T>, i: number, what = 'the list'): T {
  const k = i < 0 ? arr.length + i : i;
  if (k < 0 || k >= arr.length) throw new Error(`${what} has no element ${i} (it has ${arr.length})`);
  return arr[k] as T;
}

/** `v`, which must be neither undefined nor null. */
export function must<T>(v: T | undefined | null, what = 'a value'): T {
  if (v === undefined || v === null) throw new Error(`${what} is missing`);
  return v;
}

type Tuple<T, N extends number, R extends T[] = []> = R['length'] extends N ? R : Tuple<T, N, [...R, T]>;

/** The first `n` elements of `arr`, which must have at least that many (for `const [a, b] = take(list, 2)`). */
export function take<T, N extends number>(arr: readonly T[], n: N, what = 'the list'): Tuple<T, N> {
  if (arr.length < n) throw new Error(`${what} has ${arr.length} elements, not at least ${n}`);
  return arr.slice(0, n) as Tuple<T, N>;
}

/** Flips the bits `mask` of byte `i` of `b` in place (the byte must be there). */
export function xorByte(b: Buffer, i: number, mask: number): void {
  b[i] = nth(b, i, 'the buffer') ^ mask;
}
