/**
 * Postgres LSNs ("16/B374D848") as bigints, and walflow's row version.
 *
 * A version orders every row image walflow writes: the commit LSN of the
 * transaction that produced it in the high bits, the change's position inside
 * that transaction in the low 32 bits. Backfill rows carry the snapshot's
 * consistent LSN with position 0, so any change committed at or after the
 * snapshot wins over the copied row.
 */
export type Lsn = bigint;
export type Version = bigint;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const m = LSN_TEXT.exec(text.trim());
  if (!m) throw new Error(`not a Postgres LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Canonical text form, as Postgres prints it (no zero padding). */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Normalises any LSN text (e.g. zero-padded "00000000/0ABC") to Postgres's form. */
export function normalizeLsn(text: string): string {
  return formatLsn(parseLsn(text));
}

/** Whether confirming `next` moves a slot forward: confirmations never go back. */
export const advancesConfirmed = (confirmed: Lsn | undefined, next: Lsn | undefined): next is Lsn =>
  next !== undefined && (confirmed === undefined || next > confirmed);

export const SEQ_BITS = 32n;
const MAX_SEQ = (1n << SEQ_BITS) - 1n;

export function makeVersion(commitLsn: Lsn, seq: number | bigint): Version {
  const s = BigInt(seq);
  if (s < 0n || s > MAX_SEQ) throw new Error(`change position ${s} out of range`);
  return (commitLsn << SEQ_BITS) | s;
}

export function versionLsn(version: Version): Lsn {
  return version >> SEQ_BITS;
}
