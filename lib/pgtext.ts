/** Canonical values (lib/model.ts) back to Postgres's text input form, e.g. for parameters cast with `$1::type`. */
import type { Row, TableSchema, Value } from './model.ts';

export function toPgText(value: Value): string | null {
  if (value === null) return null;
  if (Array.isArray(value)) return arrayLiteral(value);
  return scalarText(value);
}

function scalarText(value: Exclude<Value, null | Value[]>): string {
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (typeof value === 'number') return numberText(value);
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  return value;
}

function arrayLiteral(items: Value[]): string {
  return `{${items
    .map((v) => {
      if (v === null) return 'NULL';
      if (Array.isArray(v)) return arrayLiteral(v);
      return `"${scalarText(v).replace(/[\\"]/g, (c) => `\\${c}`)}"`;
    })
    .join(',')}}`;
}

/** A float as Postgres prints it: NaN, ±Infinity, and -0 (String(-0) says "0"). */
export function numberText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  return Object.is(value, -0) ? '-0' : String(value);
}

/** A row's key as one string, equal exactly when the keys are equal (Postgres text of each key column). */
export const keyText = (schema: TableSchema, row: Row): string =>
  JSON.stringify(schema.key.map((k) => toPgText(row[k] ?? null)));
