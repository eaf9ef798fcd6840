/**
 * Filter and transform rules (config key `rules`), compiled against a table's source schema into
 * pure functions over changes: what every destination receives instead of the source's changes.
 *
 * - filter: rows kept. An update whose new row fails it becomes a delete (the row left the set, or
 *   never was in it: a tombstone for a row that may not exist is harmless under versions), unless
 *   the old image (REPLICA IDENTITY FULL) shows it was out already; an update whose old image was
 *   out and new row is in becomes an insert. A delete is dropped only when its old image holds the
 *   filter's columns and fails it (with REPLICA IDENTITY DEFAULT the old image is the key only).
 * - transform (in order), columns include/exclude, rename: applied to new rows and old images alike,
 *   so deletes reach the same (hashed, renamed) key.
 * Comparisons are exact in walflow's value model (lib/model.ts): int8/numeric as decimals, dates
 * and timestamps in time order, text by code point; a comparison with NULL is false.
 */
import { createHmac } from 'node:crypto';
import {
  ConfigError,
  qualifyTable,
  renamedTable,
  type Condition,
  type Operation,
  type PipelineConfig,
  type TableRules,
  type Transform,
} from './config.ts';
import {
  tableKey,
  type Change,
  type ColumnSchema,
  type Row,
  type TableId,
  type TableSchema,
  type Value,
} from './model.ts';
import { toPgText } from './pgtext.ts';

/** One table's rules bound to its source schema. */
export interface BoundRules {
  /** The destination table: renamed, columns selected, renamed and retyped. */
  schema: TableSchema;
  /**
   * The changes to write for one source change of this table (none or one). A schema change
   * yields the destination's; the caller binds the new schema for the changes after it.
   */
  apply(change: Change): Change[];
  /** A source row as the destination holds it (backfill's `read`), or undefined when filtered out. */
  readRow(row: Row): Row | undefined;
}

/** The rules of a pipeline; `bind` is undefined for tables without rules. */
export interface PipelineRules {
  bind(schema: TableSchema): BoundRules | undefined;
  covers(table: TableId): boolean;
}

/** `secret` resolves a hash salt reference (in the worker or CLI only). */
export function compileRules(
  pipeline: Pick<PipelineConfig, 'id' | 'rules'>,
  secret: (ref: string) => string,
): PipelineRules {
  const byTable = new Map(
    Object.entries(pipeline.rules ?? {}).map(([name, rules]) => [qualifyTable(name), { name, rules }]),
  );
  return {
    bind(schema) {
      const found = byTable.get(tableKey(schema));
      return found && bindTableRules({ pipeline: pipeline.id, table: found.name, rules: found.rules, schema, secret });
    },
    covers: (table) => byTable.has(tableKey(table)),
  };
}

const ALL_OPERATIONS: readonly Operation[] = ['read', 'insert', 'update', 'delete'];
const operationOf = (c: Change): Operation | undefined =>
  c.kind === 'insert'
    ? c.snapshot
      ? 'read'
      : 'insert'
    : c.kind === 'update' || c.kind === 'delete'
      ? c.kind
      : undefined;

/** How one destination column is made from one source column. */
interface ColumnPlan {
  from: string;
  column: ColumnSchema;
  value: (v: Value, op: Operation) => Value;
}

export function bindTableRules(opts: {
  pipeline: string;
  table: string;
  rules: TableRules;
  schema: TableSchema;
  secret: (ref: string) => string;
}): BoundRules {
  const { rules, schema } = opts;
  const fail = (rule: string, message: string): never => {
    throw new ConfigError(`pipeline ${opts.pipeline}, table ${opts.table}, rule ${rule}: ${message}`);
  };
  const columnOf = (rule: string, name: string): ColumnSchema =>
    schema.columns.find((c) => c.name === name) ??
    fail(
      rule,
      `column "${name}" does not exist in ${tableKey(schema)} ` +
        `(columns: ${schema.columns.map((c) => c.name).join(', ')})`,
    );
  const isKey = (name: string) => schema.key.includes(name);

  const filter = rules.filter && compileCondition(rules.filter.where, 'filter.where', columnOf, fail);
  const filterOps = new Set(rules.filter?.operations ?? ALL_OPERATIONS);

  const plans = new Map<string, ColumnPlan>(
    schema.columns.map((c) => [c.name, { from: c.name, column: c, value: (v) => v }]),
  );
  (rules.transform ?? []).forEach((t, i) => {
    const rule = `transform[${i}]`;
    const source = columnOf(rule, t.column);
    const plan = plans.get(source.name) ?? fail(rule, `column "${t.column}" was dropped by an earlier transform`);
    if (isKey(t.column) && !(t.hash && !t.operations)) {
      fail(
        rule,
        `"${t.column}" is part of the key (${schema.key.join(', ')}): only a hash on every operation keeps keys ` +
          `distinct and deletes matching`,
      );
    }
    if (t.drop) {
      plans.delete(source.name);
      return;
    }
    const ops = new Set(t.operations ?? ALL_OPERATIONS);
    const before = plan.value;
    const { fn, column } = compileTransform(t, plan.column, (m) => fail(rule, m), opts.secret);
    // A retyped column holds text in every operation, also where this transform does not apply.
    const retyped = column.kind !== plan.column.kind || column.type !== plan.column.type;
    plan.column = column;
    plan.value = (v, op) => {
      const prior = before(v, op);
      if (ops.has(op)) return fn(prior);
      return retyped && prior !== null && typeof prior !== 'string' ? toPgText(prior) : prior;
    };
  });

  if (rules.columns?.include) {
    for (const name of rules.columns.include) columnOf('columns.include', name);
    for (const k of schema.key)
      if (!rules.columns.include.includes(k)) fail('columns.include', `must include the key column "${k}"`);
    for (const name of [...plans.keys()]) if (!rules.columns.include.includes(name)) plans.delete(name);
  }
  for (const name of rules.columns?.exclude ?? []) {
    columnOf('columns.exclude', name);
    if (isKey(name)) fail('columns.exclude', `"${name}" is part of the key (${schema.key.join(', ')})`);
    plans.delete(name);
  }
  const renames = rules.rename?.columns ?? {};
  for (const [from, to] of Object.entries(renames)) {
    columnOf(`rename.columns.${from}`, from);
    if (!plans.has(from))
      fail(`rename.columns.${from}`, `column "${from}" is not in the destination (dropped or excluded)`);
    plans.get(from)!.column = { ...plans.get(from)!.column, name: to };
  }
  const outputs = [...plans.values()];
  const names = outputs.map((p) => p.column.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) fail('rename.columns', `two columns would be named "${twice}"`);
  const renamed = (name: string) => plans.get(name)?.column.name;

  const [destSchema, destName] = splitTable(renamedTable(tableKey(schema), rules.rename?.table));
  const table = { schema: destSchema, name: destName };
  const bound: TableSchema = {
    ...table,
    columns: outputs.map((p) => p.column),
    key: schema.key.map((k) => renamed(k)!),
    replicaIdentity: schema.replicaIdentity,
  };

  const mapRow = (row: Row, op: Operation): Row => {
    const out: Row = {};
    for (const p of outputs) if (p.from in row) out[p.column.name] = p.value(row[p.from]!, op);
    return out;
  };
  const keyOnly = (row: Row): Row => Object.fromEntries(schema.key.map((k) => [k, row[k] ?? null]));
  // undefined: the image lacks a column the filter reads, so it cannot say.
  const passes = (row: Row): boolean | undefined =>
    filter?.columns.every((c) => c in row) ? filter.test(row) : undefined;
  const keeps = (op: Operation, row: Row) => !filter || !filterOps.has(op) || passes(row) !== false;
  const sameKey = (a: Row, b: Row) => schema.key.every((k) => toPgText(a[k] ?? null) === toPgText(b[k] ?? null));

  return {
    schema: bound,
    readRow: (row) => (keeps('read', row) ? mapRow(row, 'read') : undefined),
    apply(change) {
      const op = operationOf(change);
      switch (change.kind) {
        case 'insert':
          return keeps(op!, change.row) ? [{ ...change, table, row: mapRow(change.row, op!) }] : [];
        case 'delete':
          return keeps('delete', change.old) ? [{ ...change, table, old: mapRow(change.old, 'delete') }] : [];
        case 'update': {
          const { version, tx } = change;
          const oldIn = change.old && filter && filterOps.has('update') ? passes(change.old) : undefined;
          if (!keeps('update', change.row)) {
            if (oldIn === false) return [];
            // A key change leaving the filter deletes the old key: the new key had no row before this update.
            // (One change per update, so a stream consumer's id `<pipeline>:<version>` stays unique.)
            const gone = change.old && !sameKey(change.old, change.row) ? change.old : change.row;
            return [{ kind: 'delete', table, version, ...(tx ? { tx } : {}), old: mapRow(keyOnly(gone), 'delete') }];
          }
          if (oldIn === false)
            return [{ kind: 'insert', table, version, ...(tx ? { tx } : {}), row: mapRow(change.row, 'insert') }];
          return [
            {
              ...change,
              table,
              row: mapRow(change.row, 'update'),
              ...(change.old ? { old: mapRow(change.old, 'update') } : {}),
              unchanged: change.unchanged.flatMap((c) => renamed(c) ?? []),
            },
          ];
        }
        case 'truncate':
          return [{ ...change, table }];
        case 'schema': {
          // Columns came or went: the rules must still hold on the new schema (else a loud ConfigError).
          const next = bindTableRules({ ...opts, schema: change.schema });
          return [
            {
              ...change,
              table,
              schema: next.schema,
              added: change.added.flatMap((c) =>
                next.schema.columns.filter((d) => d.name === (renames[c.name] ?? c.name)),
              ),
              dropped: change.dropped.flatMap((c) => (plans.has(c) ? [renamed(c)!] : [])),
            },
          ];
        }
      }
    },
  };
}

function splitTable(qualified: string): [string, string] {
  const dot = qualified.indexOf('.');
  return [qualified.slice(0, dot), qualified.slice(dot + 1)];
}

interface CompiledCondition {
  test: (row: Row) => boolean;
  /** Source columns the condition reads. */
  columns: string[];
}

function compileCondition(
  c: Condition,
  path: string,
  columnOf: (rule: string, name: string) => ColumnSchema,
  fail: (rule: string, message: string) => never,
): CompiledCondition {
  const parts = (list: Condition[], name: string) =>
    list.map((x, i) => compileCondition(x, `${path}.${name}[${i}]`, columnOf, fail));
  if (c.all) {
    const ps = parts(c.all, 'all');
    return { test: (r) => ps.every((p) => p.test(r)), columns: ps.flatMap((p) => p.columns) };
  }
  if (c.any) {
    const ps = parts(c.any, 'any');
    return { test: (r) => ps.some((p) => p.test(r)), columns: ps.flatMap((p) => p.columns) };
  }
  if (c.not) {
    const p = compileCondition(c.not, `${path}.not`, columnOf, fail);
    return { test: (r) => !p.test(r), columns: p.columns };
  }
  const column = columnOf(path, c.column!);
  const test = compileComparison(c, column, (m) => fail(path, `column "${column.name}" (${column.type}): ${m}`));
  return { test: (r) => test(r[column.name] ?? null), columns: [column.name] };
}

type Comparator = 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte';
type Literal = string | number | boolean;

function compileComparison(
  c: Condition,
  column: ColumnSchema,
  fail: (message: string) => never,
): (v: Value) => boolean {
  if (c.is_null !== undefined) {
    const want = c.is_null;
    return (v) => (v === null) === want;
  }
  if (column.arrayDims > 0 || column.kind === 'bytes') fail('only is_null compares arrays and bytea');
  if (c.contains !== undefined) {
    const needle = c.contains;
    if (!TEXT_VALUED.has(column.kind)) fail('contains needs a text-valued column (text, json, uuid, time, interval)');
    return (v) => typeof v === 'string' && v.includes(needle);
  }
  const order = orderFor(column, fail);
  if (c.in !== undefined) {
    const keys = c.in.map((l) => order.literal(l));
    return (v) => v !== null && keys.some((k) => order.compare(v, k) === 0);
  }
  const op = (['eq', 'ne', 'gt', 'gte', 'lt', 'lte'] as const).find((k) => c[k] !== undefined)!;
  if (op !== 'eq' && op !== 'ne' && !order.ordered)
    fail(`${op} needs an ordered type (numbers, dates, timestamps, character types, uuid, time, enums)`);
  const key = order.literal(c[op]!);
  const holds: Record<Comparator, (n: number) => boolean> = {
    eq: (n) => n === 0,
    ne: (n) => n !== 0,
    gt: (n) => n > 0,
    gte: (n) => n >= 0,
    lt: (n) => n < 0,
    lte: (n) => n <= 0,
  };
  const h = holds[op];
  return (v) => v !== null && h(order.compare(v, key));
}

const TEXT_VALUED = new Set(['text', 'json', 'uuid', 'time', 'interval']);

/** A column kind's order: `literal` checks and converts a config value, `compare` orders a row value against it. */
interface Order {
  ordered: boolean;
  literal: (l: Literal) => unknown;
  compare: (v: Value, key: unknown) => number;
}

function orderFor(column: ColumnSchema, fail: (message: string) => never): Order {
  const bad = (l: Literal, what: string): never => fail(`${JSON.stringify(l)} is not ${what}`);
  switch (column.kind) {
    case 'int':
    case 'float':
      return {
        ordered: true,
        literal: (l) => (typeof l === 'number' ? l : bad(l, 'a number')),
        compare: (v, k) => compareFloat(v as number, k as number),
      };
    case 'bigint':
    case 'decimal':
      return {
        ordered: true,
        literal: (l) =>
          decimalLiteral(l) ??
          bad(l, 'an exact decimal (write big or fractional numbers as strings: "12345678901234567890", "0.1")'),
        compare: (v, k) => compareDecimal(parseDecimal(v as string) ?? unexpected(v, column.kind), k as ParsedDecimal),
      };
    case 'bool':
      return {
        ordered: false,
        literal: (l) => (typeof l === 'boolean' ? l : bad(l, 'true or false')),
        compare: (v, k) => (v === k ? 0 : 1),
      };
    case 'date':
    case 'timestamp':
    case 'timestamptz': {
      const kind = column.kind;
      const example = {
        date: '2024-02-29',
        timestamp: '2024-06-30 21:59:59.123456',
        timestamptz: '2024-06-30 21:59:59.123456+00',
      }[kind];
      return {
        ordered: true,
        literal: (l) =>
          (typeof l === 'string' ? parseTemporal(l, kind) : undefined) ??
          bad(l, `a ${kind} in walflow's form, e.g. "${example}"`),
        compare: (v, k) => compareTemporal(parseTemporal(v as string, kind) ?? unexpected(v, kind), k as Temporal),
      };
    }
    case 'json':
      return fail('json compares only with contains and is_null');
    case 'interval':
      return {
        ordered: false,
        literal: (l) => (typeof l === 'string' ? l : bad(l, 'a string')),
        compare: (v, k) => (v === k ? 0 : 1),
      };
    default:
      return textOrder(column, (l) => (typeof l === 'string' ? l : bad(l, 'a string')), bad);
  }
}

// The value itself stays out of the message: errors reach workflow history, row values must not.
const unexpected = (_v: Value, kind: string): never => {
  throw new Error(`filter: a ${kind} value is not in walflow's form`);
};

/**
 * Text-valued columns: enums in their declared order, char(n) without its padding, citext and uuid
 * without case, character types and uuid by code point; other types held as text (money, inet, timetz, ...)
 * only for equality, as their text order is not Postgres's.
 */
function textOrder(
  column: ColumnSchema,
  string: (l: Literal) => string,
  bad: (l: Literal, what: string) => never,
): Order {
  const labels = column.enumLabels;
  if (labels) {
    const literal = (l: Literal) =>
      labels.includes(string(l)) ? labels.indexOf(string(l)) : bad(l, `a label of the enum (${labels.join(', ')})`);
    return { ordered: true, literal, compare: (v, k) => labels.indexOf(v as string) - (k as number) };
  }
  const type = column.type;
  const norm =
    type.startsWith('character(') || type === 'character'
      ? (s: string) => s.replace(/ +$/, '')
      : type === 'citext' || column.kind === 'uuid'
        ? (s: string) => s.toLowerCase()
        : (s: string) => s;
  const ordered =
    column.kind === 'uuid' ||
    (column.kind === 'time' && !type.includes('with time zone')) ||
    /^(text|character varying|character|name|citext|"char")(\(|$)/.test(type);
  return {
    ordered,
    literal: (l) => norm(string(l)),
    compare: (v, k) => (ordered ? compareCodePoints(norm(v as string), k as string) : norm(v as string) === k ? 0 : 1),
  };
}

/** Postgres's float order: NaN equals NaN and sorts above everything. */
function compareFloat(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) ? (Number.isNaN(b) ? 0 : 1) : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareCodePoints(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d) return d;
  }
  return x.length - y.length;
}

/**
 * A decimal as sign and digits (no leading integer or trailing fraction zeros); or ±Infinity / NaN (above everything,
 * as in Postgres).
 */
type ParsedDecimal = { special: -1 | 1 | 2 } | { special: 0; sign: -1 | 0 | 1; int: string; frac: string };

function parseDecimal(s: string): ParsedDecimal | undefined {
  if (s === 'NaN') return { special: 2 };
  if (s === 'Infinity') return { special: 1 };
  if (s === '-Infinity') return { special: -1 };
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || (m[2] === '' && !m[3])) return undefined;
  const int = m[2]!.replace(/^0+/, '');
  const frac = (m[3] ?? '').replace(/0+$/, '');
  const sign = int === '' && frac === '' ? 0 : m[1] === '-' ? -1 : 1;
  return { special: 0, sign, int, frac };
}

function decimalLiteral(l: Literal): ParsedDecimal | undefined {
  if (typeof l === 'number') return Number.isSafeInteger(l) ? parseDecimal(String(l)) : undefined;
  return typeof l === 'string' ? parseDecimal(l) : undefined;
}

function compareDecimal(a: ParsedDecimal, b: ParsedDecimal): number {
  const rank = (d: ParsedDecimal) => (d.special === 0 ? 0 : d.special === -1 ? -1 : d.special);
  if (a.special !== 0 || b.special !== 0) return Math.sign(rank(a) - rank(b));
  if (a.sign !== b.sign) return a.sign - b.sign;
  const magnitude =
    a.int.length !== b.int.length
      ? a.int.length - b.int.length
      : a.int !== b.int
        ? a.int < b.int
          ? -1
          : 1
        : a.frac.padEnd(b.frac.length, '0') < b.frac.padEnd(a.frac.length, '0')
          ? -1
          : a.frac.padEnd(b.frac.length, '0') > b.frac.padEnd(a.frac.length, '0')
            ? 1
            : 0;
  return a.sign * Math.sign(magnitude);
}

/** A date or timestamp as one number in time order (microseconds on a year/month/day grid), or ±infinity. */
type Temporal = { infinite: -1 | 1 } | { infinite: 0; at: bigint };

function parseTemporal(s: string, kind: 'date' | 'timestamp' | 'timestamptz'): Temporal | undefined {
  if (s === 'infinity') return { infinite: 1 };
  if (s === '-infinity') return { infinite: -1 };
  const m = /^(\d{4,})-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?(\+00)?( BC)?$/.exec(s);
  if (!m || (kind === 'date') !== (m[4] === undefined) || (kind === 'timestamptz') !== (m[8] !== undefined))
    return undefined;
  const year = BigInt(m[9] ? 1 - Number(m[1]) : Number(m[1]));
  const n = (i: number) => BigInt(m[i] ?? 0);
  const micros = BigInt((m[7] ?? '').padEnd(6, '0'));
  return {
    infinite: 0,
    at: (((((year * 13n + n(2)) * 32n + n(3)) * 25n + n(4)) * 60n + n(5)) * 61n + n(6)) * 1_000_000n + micros,
  };
}

function compareTemporal(a: Temporal, b: Temporal): number {
  if (a.infinite !== 0 || b.infinite !== 0) return a.infinite - b.infinite;
  return a.at < b.at ? -1 : a.at > b.at ? 1 : 0;
}

const TEXT_COLUMN = { type: 'text', typeOid: 25, kind: 'text', arrayDims: 0 } as const;

/** A transform's function on a value, and the column it makes (regex, mask and hash make text). */
function compileTransform(
  t: Transform,
  column: ColumnSchema,
  fail: (message: string) => never,
  secret: (ref: string) => string,
): { fn: (v: Value) => Value; column: ColumnSchema } {
  const asText: ColumnSchema = { name: column.name, nullable: column.nullable, ...TEXT_COLUMN };
  const text = (f: (s: string) => string) => (v: Value) => (v === null ? null : f(toPgText(v)!));
  if (t.regex) {
    const re = new RegExp(t.regex.pattern, `g${t.regex.flags ?? ''}`);
    const replace = t.regex.replace;
    return { fn: text((s) => s.replace(re, replace)), column: asText };
  }
  if (t.mask) {
    const { keepFirst, keepLast, char } = t.mask;
    return {
      fn: text((s) => {
        const chars = [...s];
        // A value no longer than what is kept is masked whole: a mask never shows a value in clear.
        if (chars.length <= keepFirst + keepLast) return char.repeat(chars.length);
        return (
          chars.slice(0, keepFirst).join('') +
          char.repeat(chars.length - keepFirst - keepLast) +
          chars.slice(chars.length - keepLast).join('')
        );
      }),
      column: asText,
    };
  }
  if (t.hash) {
    const salt = secret(t.hash.salt);
    return { fn: text((s) => createHmac('sha256', salt).update(s).digest('hex')), column: asText };
  }
  const value = setValue(t.set!, column, fail);
  return { fn: () => value, column: value === null ? { ...column, nullable: true } : column };
}

/** A `set` constant as a value of the column's kind. */
function setValue(l: Literal | null, column: ColumnSchema, fail: (message: string) => never): Value {
  if (l === null) return null;
  const bad = (what: string): never => fail(`set ${JSON.stringify(l)} is not ${what}`);
  if (column.arrayDims > 0) return fail('set on an array column is not supported (drop it, or set null)');
  switch (column.kind) {
    case 'int':
    case 'float':
      return typeof l === 'number' && (column.kind === 'float' || Number.isInteger(l))
        ? l
        : bad(`a ${column.kind === 'int' ? 'whole ' : ''}number`);
    case 'bigint':
      return typeof l === 'string' && /^-?\d+$/.test(l)
        ? l
        : typeof l === 'number' && Number.isSafeInteger(l)
          ? String(l)
          : bad('an integer (as a string when large)');
    case 'decimal': {
      const d = typeof l === 'string' ? l : typeof l === 'number' && Number.isSafeInteger(l) ? String(l) : undefined;
      if (d === undefined || !/^-?\d+(\.\d+)?$/.test(d)) return bad('an exact decimal string such as "12.50"');
      if (column.scale === undefined) return d;
      const [int, frac = ''] = d.split('.');
      if (frac.length > column.scale) return bad(`a decimal with at most ${column.scale} fraction digits`);
      return column.scale ? `${int}.${frac.padEnd(column.scale, '0')}` : int!;
    }
    case 'bool':
      return typeof l === 'boolean' ? l : bad('true or false');
    case 'date':
    case 'timestamp':
    case 'timestamptz':
      return typeof l === 'string' && parseTemporal(l, column.kind) ? l : bad(`a ${column.kind} in walflow's form`);
    case 'text':
    case 'uuid':
      if (column.enumLabels && !column.enumLabels.includes(String(l)))
        return bad(`one of the enum's labels (${column.enumLabels.join(', ')})`);
      return typeof l === 'string' ? l : bad('a string');
    default:
      return fail(`set on a ${column.type} column is not supported (drop it, or set null)`);
  }
}
