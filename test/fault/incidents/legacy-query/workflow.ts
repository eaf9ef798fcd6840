/**
 * The smallest workflow that shows the SDK's legacy-query divergence (README.md beside this file): it starts a
 * timer when a signal is handled at a later workflow time than the signal ten before it, a decision taken from
 * history alone if signal handlers see the same clock live and on replay.
 */
import { defineQuery, defineSignal, proxySinks, setHandler, sleep, type Sinks } from '@temporalio/workflow';

export interface ClockSinks extends Sinks {
  clock: { seen(signal: number, at: number): void };
}
const { clock } = proxySinks<ClockSinks>();
export const tick = defineSignal<[number]>('tick');
export const count = defineQuery<number>('count');
/** Signals before this one only grow the history (past a page) and set the clocks compared with. */
export const FIRST_COMPARED = 160;

export async function legacyQueryWorkflow(): Promise<void> {
  const clocks: number[] = [];
  setHandler(count, () => clocks.length);
  setHandler(tick, (i) => {
    const now = Date.now();
    clocks[i] = now;
    clock.seen(i, now);
    if (i >= FIRST_COMPARED && now > (clocks[i - 10] ?? now)) void sleep('1 hour');
  });
  await sleep('1 day');
}
