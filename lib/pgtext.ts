/** Canonical values (lib/model.ts) back to Postgres's text input form, e.g. for parameters cast with `$1::type`. */
import type { Value } from './model.ts';

export function toPgText(value: Value): string | null {
  if (value === null) return null;
  if (Array.isArray(value)) return arrayLiteral(value);
  return scalarText(value);
}

function scalarText(value: Exclude<Value, null | Value[]>): string {
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : value === Infinity ? 'Infinity' : value === -Infinity ? '-Infinity' : String(value);
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  return value;
}

function arrayLiteral(items: Value[]): string {
  return `{${items.map((v) => {
    if (v === null) return 'NULL';
    if (Array.isArray(v)) return arrayLiteral(v);
    return `"${scalarText(v).replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  }).join(',')}}`;
}
