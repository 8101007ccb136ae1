/** What long operations report and accept, shared by every operation. */

export interface Progress {
  /** A short phrase: "copying Data.fs", "verifying 2026-01-02-10-00-00.deltafs". */
  phase: string;
  done: number;
  total?: number;
}

export type ProgressFn = (p: Progress) => void;

export interface OperationOptions {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  /** Verbose log lines (repozo's -v). */
  log?: (msg: string) => void;
}
