/**
 * How the CLI and the worker reach Temporal: address, namespace and task queue from `temporal:`
 * (WALFLOW_TEMPORAL_ADDRESS overrides the address), TLS / mTLS / API key resolved from their secret
 * references here, in the process that connects, never in a workflow.
 */
import type { TLSConfig } from '@temporalio/client';
import type { WalflowConfig } from './config.ts';
import { resolveSecret } from './secrets.ts';

export interface TemporalConnectionSettings {
  address: string;
  namespace: string;
  taskQueue: string;
  tls?: TLSConfig;
  apiKey?: string;
}

export function temporalConnectionSettings(temporal: WalflowConfig['temporal']): TemporalConnectionSettings {
  const pem = (ref: string | undefined) => (ref === undefined ? undefined : Buffer.from(resolveSecret(ref)!));
  const tls = temporal.tls && {
    serverNameOverride: temporal.tls.serverName,
    serverRootCACertificate: pem(temporal.tls.serverCa),
    clientCertPair:
      temporal.tls.clientCert && temporal.tls.clientKey
        ? { crt: pem(temporal.tls.clientCert)!, key: pem(temporal.tls.clientKey)! }
        : undefined,
  };
  return {
    address: process.env.WALFLOW_TEMPORAL_ADDRESS || temporal.address,
    namespace: temporal.namespace,
    taskQueue: temporal.taskQueue,
    tls,
    apiKey: resolveSecret(temporal.apiKey),
  };
}
