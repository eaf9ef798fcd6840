/** Source shape changes into each destination, from every Postgres major (test/support/shapes.ts). */
import { describeShapeChangesInto } from './support/shapes.ts';

const only = process.env.WALFLOW_SHAPE_DESTINATION as 'clickhouse' | 'snowflake' | 'postgres' | undefined;
for (const destination of only ? [only] : (['clickhouse', 'snowflake', 'postgres'] as const))
  describeShapeChangesInto(destination);
