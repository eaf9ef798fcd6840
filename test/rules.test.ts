/**
 * Filter and transform rules (lib/rules.ts), pure: config checks, every comparison and transform, filter transitions.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { parseConfig, TableRules, type PipelineConfig } from '../lib/config.ts';
import { compileRules, type BoundRules } from '../lib/rules.ts';
import type { Change, ColumnSchema, Row, TableSchema } from '../lib/model.ts';
import { RuledDestination } from '../activities/destinations/ruled.ts';
import { StdoutDestination } from '../activities/destinations/stdout.ts';
import { FileDestination } from '../activities/destinations/file.ts';
import { Envelopes } from '../activities/destinations/envelopes.ts';
import { ErrorType } from '../lib/errors.ts';

const col = (
  name: string,
  kind: ColumnSchema['kind'],
  type: string,
  extra: Partial<ColumnSchema> = {},
): ColumnSchema => ({ name, kind, type, typeOid: 0, arrayDims: 0, nullable: true, ...extra });

const people: TableSchema = {
  schema: 'public',
  name: 'people',
  key: ['id'],
  replicaIdentity: 'default',
  columns: [
    col('id', 'bigint', 'bigint', { nullable: false }),
    col('name', 'text', 'text'),
    col('email', 'text', 'text'),
    col('age', 'int', 'integer'),
    col('score', 'float', 'double precision'),
    col('balance', 'decimal', 'numeric(20,2)', { precision: 20, scale: 2 }),
    col('big', 'bigint', 'bigint'),
    col('active', 'bool', 'boolean'),
    col('seen', 'timestamptz', 'timestamp with time zone'),
    col('born', 'date', 'date'),
    col('tags', 'text', 'text[]', { arrayDims: 1 }),
    col('doc', 'json', 'jsonb'),
    col('photo', 'bytes', 'bytea'),
  ],
};

const pipeline = (rules: Record<string, unknown>, tables = ['people']): PipelineConfig =>
  parseConfig({
    pipelines: [
      {
        id: 'shop',
        source: { url: 'postgres://u@h/db', publication: 'p', tables },
        destination: { type: 'null' },
        rules,
      },
    ],
  }).pipelines[0]!;

const salts: Record<string, string> = { 'env:SALT': 'pepper' };
const bind = (rules: unknown, schema = people): BoundRules =>
  compileRules(pipeline({ people: rules }), (ref) => salts[ref]!).bind(schema)!;

const table = { schema: 'public', name: 'people' };
const insert = (row: Row, version = 1n): Change => ({ kind: 'insert', table, version, row });
const update = (row: Row, old?: Row): Change => ({
  kind: 'update',
  table,
  version: 2n,
  row,
  unchanged: [],
  ...(old ? { old } : {}),
});
const del = (old: Row): Change => ({ kind: 'delete', table, version: 3n, old });

/** Which of `rows` a filter keeps (as inserts), by id. */
const kept = (where: unknown, rows: Row[]) => {
  const b = bind({ filter: { where } });
  return rows.filter((r) => b.apply(insert(r)).length === 1).map((r) => r.id);
};

test('config: comparisons, transforms and columns are checked at load, errors naming the key', () => {
  const bad = (rules: unknown, tables?: string[]) =>
    assert.throws(
      () => pipeline(rules as Record<string, unknown>, tables),
      (e: Error) => {
        if (!/pipelines\[0\]\.rules/.test(e.message)) return false;
        bad.last = e.message;
        return true;
      },
    );
  bad.last = '';
  bad({ people: { filter: { where: { column: 'age', gt: 1, lt: 5 } } } });
  assert.match(bad.last, /rules\.people\.filter\.where: needs a column with exactly one of eq/);
  bad({ people: { filter: { where: { all: [{ column: 'age', equals: 1 }] } } } });
  assert.match(bad.last, /rules\.people\.filter\.where\.all\[0\]: Unrecognized key: "equals"/);
  bad({ people: { transform: [{ column: 'email', mask: { keepFirst: 1 }, hash: { salt: 'env:SALT' } }] } });
  assert.match(bad.last, /rules\.people\.transform\[0\]: needs exactly one of regex, mask, hash, set, drop/);
  bad({ people: { transform: [{ column: 'email', hash: { salt: 'pepper' } }] } });
  assert.match(bad.last, /rules\.people\.transform\[0\]\.hash\.salt: must be a secret reference/);
  bad({ people: { transform: [{ column: 'email', regex: { pattern: '(', replace: '' } }] } });
  assert.match(bad.last, /transform\[0\]\.regex\.pattern: is not a valid regular expression/);
  bad({ people: { columns: { include: ['id'], exclude: ['name'] } } });
  assert.match(bad.last, /rules\.people\.columns: needs exactly one of include, exclude/);
  bad({ orders: {} });
  assert.match(bad.last, /rules\.orders: is not one of source\.tables \(people\)/);
  bad({ people: { rename: { table: 'orders' } } }, ['people', 'orders']);
  assert.match(bad.last, /rules\.people\.rename\.table: two tables would land on public\.orders/);
  assert.ok(TableRules.parse({ filter: { where: { not: { column: 'age', is_null: true } }, operations: ['insert'] } }));
});

test('binding: a rule naming a missing column, or misusing the key or a type, names pipeline, table, rule and column', () => {
  const fails = (rules: unknown, message: RegExp) =>
    assert.throws(
      () => bind(rules),
      (e: Error) => e.name === ErrorType.Config && message.test(e.message),
    );
  fails(
    {
      filter: {
        where: {
          any: [
            { column: 'age', gt: 1 },
            { column: 'agee', gt: 1 },
          ],
        },
      },
    },
    /^pipeline shop, table people, rule filter\.where\.any\[1\]: column "agee" does not exist in public\.people \(columns: id, name/,
  );
  fails({ transform: [{ column: 'emial', mask: {} }] }, /rule transform\[0\]: column "emial" does not exist/);
  fails({ rename: { columns: { nope: 'x' } } }, /rule rename\.columns\.nope: column "nope" does not exist/);
  fails({ columns: { exclude: ['nope'] } }, /rule columns\.exclude: column "nope" does not exist/);
  fails({ columns: { include: ['name'] } }, /rule columns\.include: must include the key column "id"/);
  fails({ columns: { exclude: ['id'] } }, /"id" is part of the key/);
  fails(
    { transform: [{ column: 'id', mask: { keepLast: 2 } }] },
    /rule transform\[0\]: "id" is part of the key \(id\): only a hash on every operation/,
  );
  fails(
    { transform: [{ column: 'id', hash: { salt: 'env:SALT' }, operations: ['insert'] }] },
    /only a hash on every operation/,
  );
  fails({ filter: { where: { column: 'active', gt: true } } }, /column "active" \(boolean\): gt needs an ordered type/);
  fails(
    { filter: { where: { column: 'balance', gt: 0.1 } } },
    /column "balance" \(numeric\(20,2\)\): 0\.1 is not an exact decimal \(write big or fractional numbers as strings/,
  );
  // biome-ignore lint/correctness/noPrecisionLoss: the literal a user might write, which walflow must refuse
  fails({ filter: { where: { column: 'big', eq: 12345678901234567890 } } }, /is not an exact decimal/);
  fails(
    { filter: { where: { column: 'seen', gt: '2024-01-01T00:00:00Z' } } },
    /is not a timestamptz in walflow's form, e.g. "2024-06-30 21:59:59\.123456\+00"/,
  );
  fails({ filter: { where: { column: 'tags', eq: 'a' } } }, /only is_null compares arrays and bytea/);
  fails({ filter: { where: { column: 'age', contains: '1' } } }, /contains needs a text-valued column/);
  fails({ transform: [{ column: 'age', set: 'ten' }] }, /set "ten" is not a whole number/);
  fails({ transform: [{ column: 'balance', set: '1.234' }] }, /at most 2 fraction digits/);
  fails(
    {
      transform: [
        { column: 'email', drop: true },
        { column: 'email', mask: {} },
      ],
    },
    /rule transform\[1\]: column "email" was dropped by an earlier transform/,
  );
  fails({ rename: { columns: { name: 'email' } } }, /rule rename\.columns: two columns would be named "email"/);
});

test('filter: eq ne gt gte lt lte in on integers and floats', () => {
  const rows = [
    { id: '1', age: 17, score: 1.5 },
    { id: '2', age: 18, score: Number.NaN },
    { id: '3', age: null, score: -2 },
  ];
  assert.deepEqual(kept({ column: 'age', eq: 18 }, rows), ['2']);
  assert.deepEqual(kept({ column: 'age', ne: 18 }, rows), ['1'], 'a comparison with NULL is false');
  assert.deepEqual(kept({ column: 'age', gt: 17 }, rows), ['2']);
  assert.deepEqual(kept({ column: 'age', gte: 17 }, rows), ['1', '2']);
  assert.deepEqual(kept({ column: 'age', lt: 18 }, rows), ['1']);
  assert.deepEqual(kept({ column: 'age', lte: 18 }, rows), ['1', '2']);
  assert.deepEqual(kept({ column: 'age', in: [17, 99] }, rows), ['1']);
  assert.deepEqual(kept({ column: 'score', gt: 1 }, rows), ['1', '2'], 'NaN sorts above every number, as in Postgres');
});

test('filter: int8 and numeric compare exactly as decimals, not as JS floats', () => {
  const rows = [
    { id: '1', big: '9007199254740993', balance: '0.10' },
    { id: '2', big: '9007199254740992', balance: '-3.50' },
    { id: '3', big: '-9223372036854775808', balance: '12345678901234567.89' },
    { id: '4', big: null, balance: '0.00' },
  ];
  assert.deepEqual(kept({ column: 'big', gt: '9007199254740992' }, rows), ['1'], 'a float would call these equal');
  assert.deepEqual(kept({ column: 'big', eq: '9007199254740993' }, rows), ['1']);
  assert.deepEqual(kept({ column: 'big', lt: 0 }, rows), ['3']);
  assert.deepEqual(kept({ column: 'balance', eq: '0.1' }, rows), ['1'], 'trailing zeros do not matter');
  assert.deepEqual(kept({ column: 'balance', gte: '0' }, rows), ['1', '3', '4']);
  assert.deepEqual(kept({ column: 'balance', lt: '-3.4' }, rows), ['2']);
  assert.deepEqual(kept({ column: 'balance', gt: '12345678901234567.88' }, rows), ['3']);
  assert.deepEqual(kept({ column: 'balance', in: ['0', '-3.5'] }, rows), ['2', '4']);
  const specials = [
    { id: '1', balance: 'NaN' },
    { id: '2', balance: 'Infinity' },
    { id: '3', balance: '-Infinity' },
    { id: '4', balance: '1e3' },
  ].slice(0, 3);
  assert.deepEqual(
    kept({ column: 'balance', gt: '99999999' }, specials),
    ['1', '2'],
    'Infinity and NaN above all numbers',
  );
  assert.deepEqual(kept({ column: 'balance', lt: 'Infinity' }, specials), ['3']);
});

test(
  'filter: dates and timestamps in time order (fractions, BC, infinity), text by code point, contains, is_null, ' +
    'booleans',
  () => {
    const rows = [
      {
        id: '1',
        seen: '2024-06-30 21:59:59+00',
        born: '2000-02-29',
        name: 'zoë',
        active: true,
        email: 'a@example.com',
      },
      { id: '2', seen: '2024-06-30 21:59:59.5+00', born: '0044-03-15 BC', name: 'zoe', active: false, email: null },
      { id: '3', seen: 'infinity', born: '10000-01-01', name: '😀', active: null, email: 'b@test.org' },
    ];
    assert.deepEqual(kept({ column: 'seen', gt: '2024-06-30 21:59:59+00' }, rows), ['2', '3']);
    assert.deepEqual(kept({ column: 'seen', eq: '2024-06-30 21:59:59.500000+00' }, rows), ['2']);
    assert.deepEqual(kept({ column: 'seen', lt: '2024-06-30 21:59:59.000001+00' }, rows), ['1']);
    assert.deepEqual(kept({ column: 'born', lt: '0001-01-01' }, rows), ['2']);
    assert.deepEqual(kept({ column: 'born', gt: '9999-12-31' }, rows), ['3']);
    assert.deepEqual(
      kept({ column: 'name', gt: 'zoe' }, rows),
      ['1', '3'],
      'ë (U+00EB) and 😀 sort after e by code point',
    );
    assert.deepEqual(kept({ column: 'email', contains: '@example.' }, rows), ['1']);
    assert.deepEqual(kept({ column: 'email', is_null: true }, rows), ['2']);
    assert.deepEqual(kept({ column: 'email', is_null: false }, rows), ['1', '3']);
    assert.deepEqual(kept({ column: 'active', eq: false }, rows), ['2']);
    assert.deepEqual(
      kept({ column: 'doc', contains: '"vip"' }, [
        { id: '1', doc: '{"tier": "vip"}' },
        { id: '2', doc: '{}' },
      ]),
      ['1'],
    );
  },
);

test(
  'filter: enums in declared order, char(n) without padding, citext without case; text-held types like money ' +
    'only for equality',
  () => {
    const schema: TableSchema = {
      ...people,
      columns: [
        people.columns[0]!,
        col('lvl', 'text', 'level', { enumLabels: ['low', 'mid', 'high'] }),
        col('code', 'text', 'character(4)'),
        col('nick', 'text', 'citext'),
        col('price', 'text', 'money'),
      ],
    };
    const keep = (where: unknown, rows: Row[]) =>
      rows.filter((r) => bind({ filter: { where } }, schema).apply(insert(r)).length === 1).map((r) => r.id);
    const rows = [
      { id: '1', lvl: 'high', code: 'ab  ', nick: 'Ann', price: '$10.00' },
      { id: '2', lvl: 'low', code: 'b   ', nick: 'bob', price: '$9.00' },
    ];
    assert.deepEqual(
      keep({ column: 'lvl', gt: 'mid' }, rows),
      ['1'],
      'high > mid in the enum, though "high" < "mid" as text',
    );
    assert.deepEqual(keep({ column: 'code', eq: 'ab' }, rows), ['1']);
    assert.deepEqual(keep({ column: 'nick', eq: 'ANN' }, rows), ['1']);
    assert.deepEqual(keep({ column: 'price', eq: '$9.00' }, rows), ['2']);
    assert.throws(
      () => bind({ filter: { where: { column: 'price', gt: '$9.00' } } }, schema),
      /column "price" \(money\): gt needs an ordered type/,
    );
    assert.throws(
      () => bind({ filter: { where: { column: 'lvl', eq: 'medium' } } }, schema),
      /"medium" is not a label of the enum \(low, mid, high\)/,
    );
  },
);

test('filter: all, any and not combine', () => {
  const rows = [
    { id: '1', age: 30, name: 'ann' },
    { id: '2', age: 15, name: 'bob' },
    { id: '3', age: 40, name: 'cy' },
  ];
  assert.deepEqual(kept({ all: [{ column: 'age', gte: 18 }, { not: { column: 'name', eq: 'cy' } }] }, rows), ['1']);
  assert.deepEqual(
    kept(
      {
        any: [
          { column: 'age', lt: 18 },
          { column: 'name', in: ['cy'] },
        ],
      },
      rows,
    ),
    ['2', '3'],
  );
  assert.deepEqual(
    kept(
      {
        not: {
          any: [
            { column: 'age', lt: 18 },
            { column: 'age', gt: 35 },
          ],
        },
      },
      rows,
    ),
    ['1'],
  );
});

test('filter transitions: leaving becomes a delete, entering an insert, deletes pass unless their full old image fails', () => {
  const b = bind({ filter: { where: { column: 'age', gte: 18 } } });
  assert.deepEqual(
    b.apply(update({ id: '1', age: 20, name: 'x' })).map((c) => c.kind),
    ['update'],
    'in (old unknown): an upsert',
  );
  const leaving = b.apply(update({ id: '1', age: 10, name: 'x' }));
  assert.deepEqual(leaving, [{ kind: 'delete', table, version: 2n, old: { id: '1' } }], 'out: a delete of the key');
  assert.deepEqual(
    b.apply(update({ id: '1', age: 20 }, { id: '1', age: 10 })).map((c) => c.kind),
    ['insert'],
    'entering (old image out)',
  );
  assert.deepEqual(b.apply(update({ id: '1', age: 10 }, { id: '1', age: 12 })), [], 'out before and after: nothing');
  assert.deepEqual(
    b.apply(update({ id: '1', age: 10 }, { id: '1', age: 30 })).map((c) => c.kind),
    ['delete'],
    'leaving (old image in)',
  );
  const moved = b.apply(update({ id: '2', age: 10 }, { id: '1' }));
  assert.deepEqual(
    moved.map((c) => c.kind === 'delete' && c.old),
    [{ id: '1' }],
    'a key change leaving deletes the old key (the new one had no row)',
  );
  assert.deepEqual(
    b.apply(del({ id: '1' })).map((c) => c.kind),
    ['delete'],
    'a key-only old image cannot be judged: the delete passes',
  );
  assert.deepEqual(
    b.apply(del({ id: '1', age: 10 })),
    [],
    'a full old image out of the filter: never written, nothing to delete',
  );
  assert.deepEqual(
    b.apply(del({ id: '1', age: 20 })).map((c) => c.kind),
    ['delete'],
  );
  assert.equal(b.readRow({ id: '1', age: 10 }), undefined);
  assert.deepEqual(b.readRow({ id: '1', age: 19 }), { id: '1', age: 19 });
  const truncate: Change = { kind: 'truncate', table, version: 4n };
  assert.deepEqual(b.apply(truncate), [truncate]);
});

test('filter operations: only the listed operations are filtered', () => {
  const b = bind({ filter: { where: { column: 'age', gte: 18 }, operations: ['read', 'insert'] } });
  assert.deepEqual(b.apply(insert({ id: '1', age: 1 })), []);
  assert.deepEqual(b.apply({ kind: 'insert', table, version: 1n, row: { id: '1', age: 1 }, snapshot: true }), []);
  assert.deepEqual(
    b.apply(update({ id: '1', age: 1 })).map((c) => c.kind),
    ['update'],
    'updates are not filtered',
  );
  const noDeletes = bind({ filter: { where: { column: 'id', is_null: true }, operations: ['delete'] } });
  assert.deepEqual(
    noDeletes.apply(del({ id: '1' })),
    [],
    'a filter nothing passes, on deletes only: deletes are not replicated',
  );
  assert.equal(noDeletes.apply(insert({ id: '1' })).length, 1);
});

test('transforms: regex, mask, hash, set, drop, applied in order, on new rows and old images', () => {
  const b = bind({
    transform: [
      { column: 'name', regex: { pattern: '[aeiou]', replace: '_', flags: 'i' } },
      { column: 'email', mask: { keepFirst: 2, keepLast: 4 } },
      { column: 'big', mask: { keepLast: 2, char: '#' } },
      { column: 'id', hash: { salt: 'env:SALT' } },
      { column: 'score', set: 0 },
      { column: 'balance', set: '7' },
      { column: 'photo', drop: true },
    ],
  });
  const hmac = (s: string) => createHmac('sha256', 'pepper').update(s).digest('hex');
  const [out] = b.apply(
    insert({
      id: '42',
      name: 'Annie',
      email: 'jane@example.com',
      big: '123456',
      score: 9.5,
      balance: '1.00',
      photo: Buffer.from('x'),
      age: null,
    }),
  );
  assert.deepEqual(out && out.kind === 'insert' && out.row, {
    id: hmac('42'),
    name: '_nn__',
    email: 'ja**********.com',
    big: '####56',
    score: 0,
    balance: '7.00',
    age: null,
  });
  const [gone] = b.apply(del({ id: '42' }));
  assert.deepEqual(gone && gone.kind === 'delete' && gone.old, { id: hmac('42') }, 'a delete reaches the hashed key');
  const [short] = b.apply(insert({ id: '1', email: 'abc', name: null }));
  assert.deepEqual(
    short && short.kind === 'insert' && [short.row.email, short.row.name],
    ['***', null],
    'shorter than what is kept: masked whole; NULL stays NULL',
  );
  const [emoji] = bind({ transform: [{ column: 'name', mask: { keepFirst: 1, keepLast: 1 } }] }).apply(
    insert({ id: '1', name: '😀ab😀' }),
  );
  assert.equal(emoji && emoji.kind === 'insert' && emoji.row.name, '😀**😀', 'masks characters, not UTF-16 halves');
  const columns = Object.fromEntries(b.schema.columns.map((c) => [c.name, `${c.type}/${c.kind}`]));
  assert.equal(columns.id, 'text/text');
  assert.equal(columns.big, 'text/text', 'a masked int8 is text in the destination');
  assert.equal(columns.score, 'double precision/float', 'set keeps the type');
  assert.equal(columns.photo, undefined);
});

test('transforms limited to operations; the retyped column is text in the others too', () => {
  const b = bind({ transform: [{ column: 'age', mask: { keepFirst: 1 }, operations: ['insert'] }] });
  const rowOf = (c: Change[]) => (c[0]!.kind === 'delete' ? undefined : (c[0] as { row: Row }).row);
  assert.equal(rowOf(b.apply(insert({ id: '1', age: 42 })))!.age, '4*');
  assert.equal(rowOf(b.apply(update({ id: '1', age: 42 })))!.age, '42');
});

test('rename and columns include/exclude shape the destination table and every change', () => {
  const b = bind({
    rename: { table: 'crm.contacts', columns: { email: 'contact', id: 'person_id' } },
    columns: { include: ['id', 'email', 'age'] },
  });
  assert.deepEqual(
    { schema: b.schema.schema, name: b.schema.name, key: b.schema.key, columns: b.schema.columns.map((c) => c.name) },
    { schema: 'crm', name: 'contacts', key: ['person_id'], columns: ['person_id', 'contact', 'age'] },
  );
  const [u] = b.apply({
    kind: 'update',
    table,
    version: 2n,
    row: { id: '1', email: 'e', name: 'n', age: 3 },
    unchanged: ['email', 'name'],
    old: { id: '0', name: 'm' },
  });
  assert.deepEqual(u, {
    kind: 'update',
    table: { schema: 'crm', name: 'contacts' },
    version: 2n,
    row: { person_id: '1', contact: 'e', age: 3 },
    unchanged: ['contact'],
    old: { person_id: '0' },
  });
  const ex = bind({ columns: { exclude: ['photo', 'doc'] }, rename: { table: 'humans' } });
  assert.equal(`${ex.schema.schema}.${ex.schema.name}`, 'public.humans');
  assert.ok(!ex.schema.columns.some((c) => c.name === 'photo' || c.name === 'doc'));
});

test('a schema change is shaped by the rules; dropping a column a rule needs is a loud config error', () => {
  const rules = compileRules(
    pipeline({
      people: {
        rename: { columns: { email: 'contact' } },
        columns: { exclude: ['secret'] },
        transform: [{ column: 'email', mask: {} }],
      },
    }),
    () => '',
  );
  const secret = col('secret', 'text', 'text');
  const base: TableSchema = { ...people, columns: [people.columns[0]!, people.columns[2]!, secret] };
  const b = rules.bind(base)!;
  const note = col('note', 'text', 'text');
  const evolved: TableSchema = { ...base, columns: [...base.columns, note] };
  const [s] = b.apply({ kind: 'schema', table, version: 5n, schema: evolved, added: [note], dropped: ['secret'] });
  assert.ok(s && s.kind === 'schema');
  assert.deepEqual(
    s.added.map((c) => c.name),
    ['note'],
  );
  assert.deepEqual(s.dropped, [], 'an excluded column going away is no change downstream');
  assert.deepEqual(
    s.schema.columns.map((c) => `${c.name}:${c.type}`),
    ['id:bigint', 'contact:text', 'note:text'],
  );
  const withoutEmail: TableSchema = { ...base, columns: [base.columns[0]!, secret] };
  assert.throws(
    () => b.apply({ kind: 'schema', table, version: 6n, schema: withoutEmail, added: [], dropped: ['email'] }),
    /pipeline shop, table people, rule transform\[0\]: column "email" does not exist/,
  );
});

test('a stream destination behind the rules (stdout, in-process) never sees a masked value in clear', async () => {
  const out = new PassThrough();
  const lines: string[] = [];
  out.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  const rules = compileRules(
    pipeline({
      people: {
        transform: [{ column: 'email', mask: { keepFirst: 1 } }],
        filter: { where: { column: 'age', gte: 18 } },
      },
    }),
    () => '',
  );
  const dest = new RuledDestination(new StdoutDestination(undefined, out), rules);
  await dest.prepare([people]);
  await dest.apply([
    insert({ id: '1', email: 'jane@example.com', age: 30 }),
    insert({ id: '2', email: 'kid@example.com', age: 9 }),
    update({ id: '1', email: 'jane@example.com', age: 17 }),
  ]);
  const parsed = lines.map((l) => JSON.parse(l) as { op: string; row?: Row; old?: Row });
  assert.deepEqual(
    parsed.map((p) => [p.op, p.row ?? p.old]),
    [
      ['insert', { id: '1', email: 'j***************', age: 30 }],
      ['delete', { id: '1' }],
    ],
  );
  assert.ok(!lines.join('\n').includes('example.com'));
  await assert.rejects(
    new RuledDestination(new StdoutDestination(undefined, out), rules).apply([insert({ id: '3' })]),
    /rules: table public\.people was not prepared/,
  );
  const typo = compileRules(pipeline({ people: { filter: { where: { column: 'agee', gte: 18 } } } }), () => '');
  await assert.rejects(
    new RuledDestination(new StdoutDestination(undefined, out), typo).prepare([people]),
    (e: Error) => e.name === ErrorType.Config && /rule filter\.where: column "agee"/.test(e.message),
    'preparing the tables (stream, backfill) checks the rules against the source schema, as a ConfigError that ' +
      'stops the pipeline',
  );
  const other = { ...people, name: 'other' };
  await new RuledDestination(new StdoutDestination(undefined, out), rules).apply([
    { kind: 'truncate', table: other, version: 1n },
  ]);
  assert.match(lines.at(-1)!, /^\{"op":"truncate","table":"public\.other"/, 'a table without rules passes unchanged');
  const fast = new RuledDestination(
    Object.assign(new StdoutDestination(undefined, out), {
      acceptsCopyText: () => true,
      applyCopyText: async () => undefined,
    }),
    rules,
  );
  assert.deepEqual(
    [fast.acceptsCopyText!(people), fast.acceptsCopyText!(other)],
    [false, true],
    'the COPY-text fast path only for tables without rules',
  );
});

test(
  'the file destination (real JSON Lines files) behind the rules: envelopes filtered, masked, renamed; a leaving ' +
    'update is a delete',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walflow-rules-file-'));
    const rules = compileRules(
      pipeline({
        people: {
          filter: { where: { column: 'age', gte: 18 } },
          transform: [{ column: 'email', mask: { keepLast: 4 } }],
          rename: { table: 'adults', columns: { email: 'contact' } },
        },
      }),
      () => '',
    );
    const dest = new RuledDestination(
      new FileDestination(
        { dir, split: 'pipeline', maxBytes: 1 << 20, maxAgeMs: 60_000, gzip: false },
        new Envelopes('shop'),
      ),
      rules,
    );
    await dest.prepare([people]);
    const tx = { xid: 7, commitTime: '2026-01-01T00:00:00.000000Z' };
    await dest.apply([
      {
        kind: 'insert',
        table,
        version: 1n << 32n,
        row: { id: '1', email: 'jane@example.com', age: 30 },
        snapshot: true,
      },
      { kind: 'insert', table, version: 1n << 32n, row: { id: '2', email: 'kid@example.com', age: 9 }, snapshot: true },
      {
        kind: 'update',
        table,
        version: (2n << 32n) | 1n,
        tx,
        row: { id: '1', email: 'jane@example.com', age: 17 },
        unchanged: [],
      },
    ]);
    await dest.close();
    const text = readdirSync(dir)
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .join('');
    const envelopes = text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { op: string; table: { name: string }; key: Row; row: Row | null });
    assert.deepEqual(
      envelopes.map((e) => [e.op, e.table.name, e.key, e.row]),
      [
        ['read', 'adults', { id: '1' }, { id: '1', contact: '************.com', age: 30 }],
        ['delete', 'adults', { id: '1' }, null],
      ],
    );
    assert.ok(!text.includes('example'), 'no clear e-mail in the files');
  },
);
