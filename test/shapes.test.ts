/** Source shape changes into each analytics destination, from every Postgres major (test/support/shapes.ts). */
import { describeShapeChangesInto } from './support/shapes.ts';

describeShapeChangesInto(process.env.WALFLOW_SHAPE_DESTINATION === 'snowflake' ? 'snowflake' : 'clickhouse');
if (!process.env.WALFLOW_SHAPE_DESTINATION) describeShapeChangesInto('snowflake');
