/** Reads walflow.yaml (the file side of lib/config.ts, kept apart so workflows never import node:fs). */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError, parseConfigPerPipeline, type LoadedConfig } from './config.ts';

/** The file's config; a pipeline that fails validation is set aside with its error (see findPipeline). */
export function loadConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as Error).message} (use --config to choose another file)`);
  }
  return parseConfigPerPipeline(parseYaml(text), file);
}
