/**
 * A table's shape as a pgoutput relation message shows it, compared with what its destination table
 * holds. Every difference is either a change the destination applies exactly (a widened type, a
 * renamed column, an added column without a default, a dropped column kept) or a reason to stop the
 * table: nothing in between, so no shape change ever turns into quietly wrong data. Pure, no I/O.
 *
 * Relation messages carry names and types (OID and typmod) in column-number order, not column
 * numbers: the catalog's attnum tells a RENAME COLUMN from a drop and an add (attnums are never
 * reused, and an added column always comes after every older one).
 */
import type { ColumnRetype, ColumnSchema, TableSchema } from '../../lib/model.ts';
import { KIND_BY_OID } from '../../lib/pgvalues.ts';

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeMod: number;
}

/** Why a table stopped: what status and lastError show (the stream adds where and when). */
export interface ShapeProblem {
  reason: string;
  column?: string;
  oldType?: string;
  newType?: string;
  /** The source statement as far as the relation message tells it. */
  statement?: string;
  /** The table's new name, when it was renamed (a re-copy cannot fix that: the pipeline must name the new table). */
  renamedTo?: string;
  /**
   * The source's rows are right and only the destination's are not: a re-copy restores the table, walflow does it
   * itself.
   */
  recopy?: true;
}

export interface ShapeChange {
  added: ColumnSchema[];
  dropped: string[];
  retyped: ColumnRetype[];
  renamed: { from: string; to: string }[];
}

export type ShapeVerdict =
  /** `names`: the destination column of each relation column; `change` unless nothing differs. */
  { kind: 'ok'; schema: TableSchema; names: string[]; change?: ShapeChange } | { kind: 'stop'; problem: ShapeProblem };

/** What the destination can do exactly (see Destination.canRetype / canRename). */
export interface DestinationAbilities {
  canRetype(from: ColumnSchema, to: ColumnSchema, key: boolean): boolean;
  canRename(column: ColumnSchema, key: boolean): boolean;
}

const TYPE_NAMES: Record<number, string> = {
  21: 'smallint',
  23: 'integer',
  20: 'bigint',
  700: 'real',
  701: 'double precision',
  1700: 'numeric',
  1043: 'character varying',
  25: 'text',
};
const INTS = [21, 23, 20];
const numericParts = (mod: number) => ({ precision: ((mod - 4) >> 16) & 65535, scale: (mod - 4) & 65535 });

/** A type as format_type prints it, for the types walflow widens (others by OID). */
export function typeName(t: { typeOid: number; typeMod: number }): string {
  const base = TYPE_NAMES[t.typeOid] ?? `type ${t.typeOid}`;
  if (t.typeOid === 1700 && t.typeMod > 0) {
    const { precision, scale } = numericParts(t.typeMod);
    return `numeric(${precision},${scale})`;
  }
  return t.typeOid === 1043 && t.typeMod > 0 ? `${base}(${t.typeMod - 4})` : base;
}

/** Every value of `from` is a value of `to`, with the same text: a widening a destination can follow. */
export function widens(from: { typeOid: number; typeMod: number }, to: { typeOid: number; typeMod: number }): boolean {
  const [f, t, fm, tm] = [from.typeOid, to.typeOid, from.typeMod, to.typeMod];
  if (INTS.includes(f) && INTS.includes(t)) return INTS.indexOf(t) > INTS.indexOf(f);
  if (f === 700 && t === 701) return true;
  if (f === 1700 && t === 1700) {
    if (tm < 0) return fm >= 0;
    if (fm < 0) return false;
    const a = numericParts(fm);
    const b = numericParts(tm);
    return (
      b.scale >= a.scale &&
      b.precision - b.scale >= a.precision - a.scale &&
      (b.precision !== a.precision || b.scale !== a.scale)
    );
  }
  const texts = [1043, 25];
  if (texts.includes(f) && texts.includes(t)) {
    const fl = f === 25 ? -1 : fm;
    const tl = t === 25 ? -1 : tm;
    return fl === tl ? f !== t : tl < 0 || (fl >= 0 && tl > fl);
  }
  return false;
}

const sameType = (c: ColumnSchema, r: RelationColumn) =>
  c.typeOid === r.typeOid && (c.typeMod === undefined || c.typeMod === r.typeMod);

function retypedColumn(d: ColumnSchema, r: RelationColumn, catalog: TableSchema | undefined): ColumnSchema {
  const cat = catalog?.columns.find((c) => c.attnum === d.attnum && c.typeOid === r.typeOid && c.typeMod === r.typeMod);
  const { precision: _p, scale: _s, ...rest } = d;
  return {
    ...rest,
    type: cat?.type ?? typeName(r),
    typeOid: r.typeOid,
    typeMod: r.typeMod,
    kind: KIND_BY_OID[r.typeOid] ?? 'text',
    ...(r.typeOid === 1700 && r.typeMod > 0 ? numericParts(r.typeMod) : {}),
    widenedFrom: [...(d.widenedFrom ?? []), { typeOid: d.typeOid, typeMod: d.typeMod ?? -1 }],
  };
}

/**
 * The catalog's table has the recorded shape: the same live columns (name, exact type, column number) and key. A
 * backfill copies rows of the catalog's shape under its snapshot into a destination table of the recorded one.
 */
export function sameShape(recorded: TableSchema, catalog: TableSchema): boolean {
  const live = recorded.columns.filter((c) => !c.dropped);
  const same = (a: ColumnSchema, b: ColumnSchema) =>
    a.name === b.name &&
    a.typeOid === b.typeOid &&
    (a.typeMod ?? -1) === (b.typeMod ?? -1) &&
    (a.attnum === undefined || b.attnum === undefined || a.attnum === b.attnum);
  return (
    live.length === catalog.columns.length &&
    catalog.columns.every((c) => live.some((r) => same(r, c))) &&
    recorded.key.join('\0') === catalog.key.join('\0')
  );
}

/**
 * Compares a relation message with the destination's shape of the table. `catalog` is the table as
 * the catalog has it now (it may be later than the message): used only to tell renames and to
 * describe added columns, and missing (undefined) when the table is gone from the catalog.
 */
export function compareShape(
  dest: TableSchema,
  rel: RelationColumn[],
  catalog: TableSchema | undefined,
  can: DestinationAbilities,
): ShapeVerdict {
  const table = `${dest.schema}.${dest.name}`;
  const stop = (problem: ShapeProblem): ShapeVerdict => ({ kind: 'stop', problem });
  const live = dest.columns.filter((c) => !c.dropped);
  const byName = new Map<string, ColumnSchema>(dest.columns.map((c) => [c.name, c]));
  for (const c of live) for (const old of c.renamedFrom ?? []) if (!byName.has(old)) byName.set(old, c);
  const matched = rel.map((r) => byName.get(r.name));
  if (new Set(matched.filter(Boolean)).size !== matched.filter(Boolean).length) {
    return stop({
      reason:
        `the columns of ${table} were renamed in a way walflow cannot follow (two columns map to one ` +
        `destination column)`,
    });
  }
  const reAdded = matched.find((c) => c?.dropped);
  if (reAdded) {
    return stop({
      reason: `column ${reAdded.name} was dropped and added again; the destination kept the dropped column's values`,
      column: reAdded.name,
      statement: `ALTER TABLE ${table} ADD COLUMN ${reAdded.name}`,
    });
  }
  let lastMatched = -1;
  matched.forEach((m, i) => {
    if (m) lastMatched = i;
  });
  const change: ShapeChange = { added: [], dropped: [], retyped: [], renamed: [] };
  const vanished = () => live.filter((c) => !matched.includes(c));
  for (let i = 0; i < rel.length; i++) {
    if (matched[i]) continue;
    const r = rel[i]!;
    const cat = catalog?.columns.find((c) => c.name === r.name);
    const was = cat?.attnum !== undefined ? vanished().find((v) => v.attnum === cat.attnum) : undefined;
    if (was) {
      if (!can.canRename(was, dest.key.includes(was.name))) {
        return stop({
          reason:
            `column ${was.name} was renamed to ${r.name}, which the destination cannot do ` +
            `for ${dest.key.includes(was.name) ? 'a key column' : 'this column'}`,
          column: was.name,
          statement: `ALTER TABLE ${table} RENAME COLUMN ${was.name} TO ${r.name}`,
        });
      }
      matched[i] = was;
      change.renamed.push({ from: was.name, to: r.name });
      continue;
    }
    if (i < lastMatched || !cat || !sameType(cat, r)) {
      return stop({
        reason:
          `column ${r.name} appeared in ${table} and the catalog (changed again since) cannot tell whether it ` +
          `was renamed or added`,
        column: r.name,
      });
    }
    if (cat.hasDefault || cat.generated) {
      return stop({
        reason:
          `column ${r.name} was added with a ${cat.generated ? 'generated value' : 'default'}: the values it ` +
          `gave existing rows are not in the WAL, so walflow re-copies the table`,
        recopy: true,
        column: r.name,
        newType: cat.type,
        statement:
          `ALTER TABLE ${table} ADD ` +
          `COLUMN ${r.name} ${cat.type} ${cat.generated ? 'GENERATED ALWAYS AS (...) STORED' : 'DEFAULT ...'}`,
      });
    }
    matched[i] = cat;
    change.added.push(cat);
  }
  for (const v of vanished()) {
    const cat = v.attnum !== undefined ? catalog?.columns.find((c) => c.attnum === v.attnum) : undefined;
    // A generated column Postgres does not publish (before 18, or publish_generated_columns off) is read by
    // key from the source with each change (decode.ts, unchanged.ts), like an untouched TOAST value.
    if (cat?.generated && cat.name === v.name) continue;
    if (cat && cat.name === v.name)
      return stop({
        reason: `column ${v.name} is in the table but not in the publication (a column list?)`,
        column: v.name,
      });
    change.dropped.push(v.name);
  }
  const retypes = new Map<ColumnSchema, ColumnSchema>();
  for (let i = 0; i < rel.length; i++) {
    const d = matched[i]!;
    const r = rel[i]!;
    if (
      change.added.includes(d) ||
      sameType(d, r) ||
      d.widenedFrom?.some((w) => w.typeOid === r.typeOid && w.typeMod === r.typeMod)
    )
      continue;
    const to = retypedColumn(d, r, catalog);
    const name = change.renamed.find((x) => x.from === d.name)?.to ?? d.name;
    const problem = {
      column: name,
      oldType: d.type,
      newType: to.type,
      statement: `ALTER TABLE ${table} ALTER COLUMN ${name} TYPE ${to.type}`,
    };
    if (!widens({ typeOid: d.typeOid, typeMod: d.typeMod ?? -1 }, r)) {
      return stop({
        ...problem,
        reason:
          `column ${name} changed type from ${problem.oldType} to ${to.type}, which is not a widening walflow ` +
          `can apply exactly`,
      });
    }
    if (!can.canRetype(d, to, dest.key.includes(d.name))) {
      return stop({
        ...problem,
        reason:
          `column ${name} changed type from ${problem.oldType} to ${to.type}, which the destination cannot ` +
          `change in place`,
      });
    }
    retypes.set(d, to);
    change.retyped.push({ from: { ...d, name }, to: { ...to, name } });
  }
  const renameOf = new Map(change.renamed.map((x) => [x.from, x.to]));
  const evolve = (c: ColumnSchema): ColumnSchema => {
    const to = retypes.get(c) ?? c;
    const name = renameOf.get(c.name);
    if (name) return { ...to, name, renamedFrom: [...(c.renamedFrom ?? []), c.name] };
    if (change.dropped.includes(c.name)) return { ...to, dropped: true };
    return to;
  };
  const schema: TableSchema = {
    ...dest,
    ...(catalog?.oid !== undefined ? { oid: catalog.oid } : {}),
    columns: [...dest.columns.map(evolve), ...change.added],
    key: dest.key.map((k) => renameOf.get(k) ?? k),
  };
  const names = matched.map((m) => (change.added.includes(m!) ? m!.name : (renameOf.get(m!.name) ?? m!.name)));
  const changed = change.added.length + change.dropped.length + change.retyped.length + change.renamed.length > 0;
  return { kind: 'ok', schema, names, ...(changed ? { change } : {}) };
}
