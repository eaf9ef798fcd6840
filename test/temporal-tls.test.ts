/**
 * `temporal.tls` (server CA, mTLS client cert/key, server name) as secret references, used by the CLI
 * and the worker. The Temporal CLI dev server has no TLS flags (`temporal server start-dev --help`
 * lists none), so a TLS terminator that demands a client certificate signed by a test CA stands in
 * front of it: gRPC over TLS (h2), certificates made with openssl, the dev server behind.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { parseConfig } from '../lib/config.ts';
import { temporalConnectionSettings } from '../lib/temporal-connection.ts';
import { startWorker, type RunningWorker } from '../worker/worker.ts';
import { probeWorkflow } from '../workflows/index.ts';
import { pgAdminUrl, temporalAddress } from './support/env.ts';

const dir = mkdtempSync(join(tmpdir(), 'walflow-tls-'));
const file = (name: string) => join(dir, name);
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });

/** A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by the CA. */
function makeCertificates(): void {
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=walflow test CA',
  );
  for (const [name, ext] of [
    ['server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(file(`${name}.ext`), `${ext}\n`);
    openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=walflow ${name}`,
    );
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
}

let proxy: tls.Server;
let address: string;
let worker: RunningWorker | undefined;

before(async () => {
  makeCertificates();
  const [host, port] = temporalAddress().split(':');
  proxy = tls.createServer(
    {
      key: readFileSync(file('server.key')),
      cert: readFileSync(file('server.pem')),
      ca: readFileSync(file('ca.pem')),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket) => {
      const upstream = net.connect(Number(port), host!);
      socket.pipe(upstream).pipe(socket);
      const end = () => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', end);
      upstream.on('error', end);
    },
  );
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  address = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
});

after(async () => {
  await worker?.shutdown();
  proxy.close();
});

const temporalConfig = (tlsConfig: Record<string, string>) => ({
  address,
  taskQueue: `tls-${process.pid}`,
  tls: tlsConfig,
});
const mtls = {
  serverCa: `file:${file('ca.pem')}`,
  clientCert: `file:${file('client.pem')}`,
  clientKey: 'env:WALFLOW_TEST_TLS_CLIENT_KEY',
  serverName: 'localhost',
};

/** The settings as the CLI and worker resolve them, without the harness's WALFLOW_TEMPORAL_ADDRESS override. */
function settings(tlsConfig: Record<string, string>) {
  process.env.WALFLOW_TEST_TLS_CLIENT_KEY = readFileSync(file('client.key'), 'utf8');
  const saved = process.env.WALFLOW_TEMPORAL_ADDRESS;
  delete process.env.WALFLOW_TEMPORAL_ADDRESS;
  try {
    return temporalConnectionSettings(parseConfig({ temporal: temporalConfig(tlsConfig), pipelines: [] }).temporal);
  } finally {
    process.env.WALFLOW_TEMPORAL_ADDRESS = saved;
  }
}

test('a worker and a client reach Temporal over mTLS, from secret references', async () => {
  const s = settings(mtls);
  worker = await startWorker(s);
  const connection = await Connection.connect({ address: s.address, tls: s.tls });
  try {
    const result = await new Client({ connection, namespace: s.namespace }).workflow.execute(probeWorkflow, {
      workflowId: `tls-probe-${Date.now()}`,
      taskQueue: s.taskQueue,
      args: [pgAdminUrl()],
    });
    assert.equal(result.walLevel, 'logical');
  } finally {
    await connection.close();
  }
});

test('without the client certificate the TLS terminator refuses the connection', async () => {
  const { clientCert: _cert, clientKey: _key, ...serverOnly } = mtls;
  const s = settings(serverOnly);
  await assert.rejects(async () => {
    const connection = await Connection.connect({ address: s.address, tls: s.tls, connectTimeout: 3000 });
    await connection.close();
  });
});

test('the CLI connects with the same `temporal.tls` settings', async () => {
  settings(mtls); // sets the key's environment variable
  const configFile = file('walflow.yaml');
  writeFileSync(
    configFile,
    stringify({
      temporal: temporalConfig(mtls),
      pipelines: [
        {
          id: 'tls-none',
          source: { url: 'postgres://x@127.0.0.1/x', publication: 'p', tables: ['t'] },
          destination: { type: 'null' },
        },
      ],
    }),
  );
  const env = { ...process.env };
  delete env.WALFLOW_TEMPORAL_ADDRESS;
  const r = await promisify(execFile)(
    process.execPath,
    ['bin/walflow.js', 'status', 'tls-none', '--config', configFile],
    { env, encoding: 'utf8' },
  ).catch((e: { stderr: string }) => ({ stderr: e.stderr }));
  // An answer from the server itself: the TLS connection worked, the workflow simply does not exist.
  assert.match(r.stderr, /no workflow walflow-tls-none in namespace default/);
});
