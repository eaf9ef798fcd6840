/**
 * Partition changes the WAL does not carry. Published via the root, a partitioned table's row changes
 * stream as the root's, but ATTACH PARTITION (the attached table's rows), DETACH PARTITION (its rows
 * leaving the root) and TRUNCATE of one partition send nothing. They show in the catalog: the set of
 * leaf partitions, and each leaf's relfilenode (a TRUNCATE gives it a new one). Told apart from what the
 * destination table reflects, the table is re-copied, which makes it exact whatever happened.
 */
import type { ShapeProblem } from './shape.ts';

/** What changed between the partitions the destination reflects and the catalog's, or undefined if nothing. */
export function partitionChange(
  table: string,
  reflected: Record<string, number>,
  current: Record<string, number>,
): ShapeProblem | undefined {
  const attached = Object.keys(current).filter((p) => !(p in reflected));
  const detached = Object.keys(reflected).filter((p) => !(p in current));
  const rewritten = Object.keys(current).filter((p) => p in reflected && reflected[p] !== current[p]);
  const changes = [
    ...attached.map((p) => `${p} attached`),
    ...detached.map((p) => `${p} detached`),
    ...rewritten.map((p) => `${p} truncated or rewritten`),
  ];
  if (!changes.length) return undefined;
  return {
    reason:
      `partitions of ${table} changed (${changes.join(', ')}); the WAL carries no rows for that, so walflow ` +
      're-copies the table',
    recopy: true,
  };
}
