/** Resolves secret references inside the worker or CLI process, never in workflow code. */
import { readFileSync } from 'node:fs';

export function resolveSecret(ref: string | undefined): string | undefined {
  if (ref === undefined) return undefined;
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const value = process.env[name];
    if (value === undefined)
      throw new Error(`secret ${ref}: environment variable ${name} is not set in the worker's environment`);
    return value;
  }
  if (ref.startsWith('file:')) {
    const path = ref.slice(5);
    try {
      return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new Error(`secret ${ref}: cannot read ${path}: ${(e as Error).message}`);
    }
  }
  throw new Error(`not a secret reference: use "env:NAME" or "file:/path"`);
}
