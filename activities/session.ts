/** The `walflow serve` session's one activity: drop its slot and the publication it created. */
import type { SessionInput } from '../lib/contract/session.ts';
import { dropPublicationIfOwned } from './postgres/publication.ts';
import { connect } from './postgres/session.ts';
import { dropSlot } from './postgres/slot.ts';
import { postgresConnection } from './source.ts';

export async function dropServeSession(input: {
  source: SessionInput['source'];
  slot: string;
  publication: string | null;
}): Promise<{ slotDropped: boolean }> {
  const connection = postgresConnection(input.source.url, input.source.password);
  const slotDropped = await dropSlot(connection, input.slot);
  if (input.publication) {
    const client = await connect(connection);
    try {
      await dropPublicationIfOwned(client, input.publication);
    } finally {
      await client.end();
    }
  }
  return { slotDropped };
}
