/**
 * Intervals as their three fields (months, days, microseconds: what Postgres stores, and DuckDB too), read
 * from Postgres's text (`IntervalStyle=postgres`, e.g. "1 year 2 mons -3 days +04:05:06.5") or DuckDB's
 * ("1 year 2 months -3 days 04:05:06.5"), and written back exactly as Postgres prints them.
 */
export interface IntervalFields {
  months: number;
  days: number;
  micros: bigint;
}

/** Postgres 17's infinite intervals: every field at its limit. */
const INFINITY: IntervalFields = { months: 2 ** 31 - 1, days: 2 ** 31 - 1, micros: 2n ** 63n - 1n };
const MINUS_INFINITY: IntervalFields = { months: -(2 ** 31), days: -(2 ** 31), micros: -(2n ** 63n) };

const UNIT = /^([+-]?\d+) (year|mon|month|day)s?$/;
const TIME = /^([+-]?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/;

export function parseInterval(text: string): IntervalFields {
  if (text === 'infinity') return { ...INFINITY };
  if (text === '-infinity') return { ...MINUS_INFINITY };
  const fields: IntervalFields = { months: 0, days: 0, micros: 0n };
  const tokens = text.trim().split(/\s+/);
  for (let i = 0; i < tokens.length; i++) {
    const pair = `${tokens[i]} ${tokens[i + 1] ?? ''}`;
    const unit = UNIT.exec(pair);
    if (unit) {
      const n = Number(unit[1]);
      if (unit[2] === 'year') fields.months += n * 12;
      else if (unit[2] === 'day') fields.days += n;
      else fields.months += n;
      i++;
      continue;
    }
    const time = TIME.exec(tokens[i]!);
    if (!time) throw new Error(`cannot read interval "${text}"`);
    const [, sign, h, m, s, frac = ''] = time;
    const micros =
      ((BigInt(h!) * 60n + BigInt(m!)) * 60n + BigInt(s!)) * 1_000_000n + BigInt(frac.padEnd(6, '0') || '0');
    fields.micros += sign === '-' ? -micros : micros;
  }
  return fields;
}

const same = (a: IntervalFields, b: IntervalFields) =>
  a.months === b.months && a.days === b.days && a.micros === b.micros;

/** Postgres's interval_out with IntervalStyle=postgres (EncodeInterval, INTSTYLE_POSTGRES). */
export function formatPostgresInterval(f: IntervalFields): string {
  if (same(f, INFINITY)) return 'infinity';
  if (same(f, MINUS_INFINITY)) return '-infinity';
  let out = '';
  let isZero = true;
  // A field after a negative one carries an explicit "+" when positive.
  let isBefore = false;
  const part = (value: number, unit: string) => {
    if (value === 0) return;
    out += `${isZero ? '' : ' '}${isBefore && value > 0 ? '+' : ''}${value} ${unit}${value !== 1 ? 's' : ''}`;
    isBefore = value < 0;
    isZero = false;
  };
  part(Math.trunc(f.months / 12), 'year');
  part(f.months % 12, 'mon');
  part(f.days, 'day');
  if (isZero || f.micros !== 0n) {
    const minus = f.micros < 0n;
    const abs = minus ? -f.micros : f.micros;
    const two = (n: bigint) => n.toString().padStart(2, '0');
    const fraction = abs % 1_000_000n;
    const clock = `${two(abs / 3_600_000_000n)}:${two((abs / 60_000_000n) % 60n)}:${two((abs / 1_000_000n) % 60n)}`;
    out += `${isZero ? '' : ' '}${minus ? '-' : isBefore ? '+' : ''}${clock}`;
    if (fraction !== 0n) out += `.${fraction.toString().padStart(6, '0').replace(/0+$/, '')}`;
  }
  return out;
}
