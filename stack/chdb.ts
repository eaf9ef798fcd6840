/** The part of chDB's Session API the endpoint uses (chDB is installed as a stack tool, not a dependency). */
export interface ChdbResult {
  readonly rowsRead: number;
  readonly bytesRead: number;
  bytes(): Uint8Array;
}

export interface Session {
  queryAsync(query: string, opts?: { format?: string }): Promise<ChdbResult>;
  queryBindAsync(query: string, params: object, opts?: { format?: string }): Promise<ChdbResult>;
  cleanup?(): void;
}
