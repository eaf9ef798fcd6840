/**
 * What the fault harness can run against: tables the pipeline writes, or a change stream a consumer reads (checked on
 * the consumer's side).
 */
export const SOAK_DESTINATIONS = ['clickhouse', 'snowflake', 'postgres', 'duckdb', 'nats', 'webhook', 'file'] as const;
export type SoakDestination = (typeof SOAK_DESTINATIONS)[number];
