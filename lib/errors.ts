/** Errors that say where they happened. */

/** Prefixes `where` to an error's message, once; its class (and so its Temporal failure type) is kept. */
export function labelError<E>(e: E, where: string): E {
  if (e instanceof Error && !e.message.startsWith(`${where}:`)) {
    const original = e.message;
    e.message = `${where}: ${original}`;
    if (e.stack?.includes(original)) e.stack = e.stack.replace(original, e.message); // logs print the stack
  }
  return e;
}
