/**
 * The envelope type and its JSON Schema say the same thing: every op's envelope is checked against the
 * schema's required keys, properties and their types, constants, enums and patterns.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { toEnvelope, type ChangeEnvelope } from '../lib/envelope.ts';
import { makeVersion, parseLsn } from '../lib/lsn.ts';
import type { Change, TableSchema } from '../lib/model.ts';

type Schema = {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  pattern?: string;
  required?: string[];
  minimum?: number;
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  oneOf?: Schema[];
  $ref?: string;
};
const root = JSON.parse(readFileSync(new URL('../lib/envelope.schema.json', import.meta.url), 'utf8')) as Schema & {
  $defs: Record<string, Schema>;
};

const typeOf = (v: unknown) =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v;

/** The errors of `value` against `schema` (the constructs envelope.schema.json uses). */
function check(value: unknown, schema: Schema, path: string): string[] {
  if (schema.$ref) return check(value, root.$defs[schema.$ref.replace('#/$defs/', '')]!, path);
  if (schema.oneOf) {
    const ok = schema.oneOf.filter((s) => check(value, s, path).length === 0).length;
    return ok === 1 ? [] : [`${path}: matches ${ok} of oneOf`];
  }
  const errors: string[] = [];
  const t = typeOf(value);
  const types = schema.type === undefined ? undefined : [schema.type].flat();
  if (types && !types.includes(t) && !(t === 'integer' && types.includes('number')))
    errors.push(`${path}: ${t}, not ${types.join('|')}`);
  if ('const' in schema && value !== schema.const) errors.push(`${path}: not ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${path}: ${JSON.stringify(value)} not in enum`);
  if (schema.pattern && typeof value === 'string' && !new RegExp(schema.pattern).test(value))
    errors.push(`${path}: ${value} does not match ${schema.pattern}`);
  if (schema.minimum !== undefined && typeof value === 'number' && value < schema.minimum)
    errors.push(`${path}: below ${schema.minimum}`);
  if (Array.isArray(value) && schema.items)
    for (const [i, v] of value.entries()) errors.push(...check(v, schema.items!, `${path}[${i}]`));
  if (t === 'object') {
    const obj = value as Record<string, unknown>;
    for (const k of schema.required ?? []) if (!(k in obj)) errors.push(`${path}.${k}: required`);
    for (const [k, v] of Object.entries(obj)) {
      const sub =
        schema.properties?.[k] ??
        (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      if (sub) errors.push(...check(v, sub, `${path}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${path}.${k}: not in the schema`);
    }
  }
  return errors;
}

const schema: Pick<TableSchema, 'key'> = { key: ['id'] };
const table = { schema: 'public', name: 'orders' };
const v = (seq: number) => makeVersion(parseLsn('16/B374D848'), seq);
const tx = { xid: 7421, commitTime: '2024-06-30T21:59:59.123456Z' };
const row = {
  id: '9007199254740993',
  total: '12.50',
  tags: ['a', null],
  blob: Buffer.from([0, 255]),
  ratio: Number.NaN,
  ok: true,
  n: 3,
};

const changes: Change[] = [
  { kind: 'insert', table, version: v(0), row, snapshot: true },
  { kind: 'insert', table, version: v(1), tx, row },
  { kind: 'update', table, version: v(2), tx, row: { ...row, ok: false }, unchanged: [], old: { id: '1' } },
  { kind: 'delete', table, version: v(3), tx, old: { id: '9007199254740993' } },
  { kind: 'truncate', table, version: v(4), tx },
  {
    kind: 'schema',
    table,
    version: v(4),
    tx,
    added: [],
    dropped: [],
    schema: {
      ...table,
      key: ['id'],
      replicaIdentity: 'default',
      columns: [{ name: 'id', type: 'bigint', typeOid: 20, kind: 'bigint', arrayDims: 0, nullable: false }],
    },
  },
];

test("every op's envelope satisfies the JSON Schema, and the schema describes every field the type has", () => {
  const envelopes = changes.map((c) => toEnvelope('shop', c, schema));
  assert.deepEqual(
    envelopes.map((e) => e.op),
    ['read', 'insert', 'update', 'delete', 'truncate', 'schema'],
  );
  for (const e of envelopes) assert.deepEqual(check(JSON.parse(JSON.stringify(e)), root, e.op), []);
  const fields: (keyof ChangeEnvelope)[] = [
    'v',
    'id',
    'pipeline',
    'op',
    'table',
    'key',
    'row',
    'old',
    'lsn',
    'version',
    'position',
    'xid',
    'commitTime',
    'columns',
  ];
  assert.deepEqual(Object.keys(root.properties!).sort(), [...fields].sort());
  assert.deepEqual(
    check({ ...envelopes[1], extra: 1 }, root, 'e'),
    ['e.extra: not in the schema'],
    'the checker can fail',
  );
});

test('values are exact, and ids are stable per change and distinct per row of a backfill', () => {
  const e = toEnvelope('shop', changes[1]!, schema);
  assert.equal(e.id, `shop:${v(1)}`);
  assert.deepEqual(e.key, { id: '9007199254740993' });
  assert.deepEqual(e.row, {
    id: '9007199254740993',
    total: '12.50',
    tags: ['a', null],
    blob: '\\x00ff',
    ratio: 'NaN',
    ok: true,
    n: 3,
  });
  assert.equal(e.lsn, '16/B374D848');
  assert.equal(e.position, 1);
  assert.equal(e.xid, 7421);
  const read = (id: string) =>
    toEnvelope('shop', { kind: 'insert', table, version: v(0), row: { ...row, id }, snapshot: true }, schema);
  assert.equal(read('1').id, read('1').id, 'the same row copied again carries the same id');
  assert.notEqual(read('1').id, read('2').id, 'rows of one snapshot (one version) have distinct ids');
  const ids = changes.map((c) => toEnvelope('shop', c, schema).id);
  assert.equal(new Set(ids).size, ids.length, 'a schema change does not share the id of the change at its position');
});
