/**
 * A local ClickHouse endpoint: the real ClickHouse engine (chDB, shipped in the
 * `chdb` npm package) behind ClickHouse's HTTP interface, so the unchanged
 * @clickhouse/client talks to it as to a server: GET /ping, queries in the
 * body or `query=`, inserts with the data in the body, `param_*` parameters,
 * `database`, gzip request bodies, and errors as ClickHouse reports them
 * ("Code: N. DB::Exception: ...", X-ClickHouse-Exception-Code).
 *
 *   node --import tsx stack/clickhouse-server.ts --port 18123 --path .walflow/clickhouse --chdb <chdb module dir>
 *
 * chDB runs one query at a time per session; requests queue in arrival order.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { gunzipSync } from 'node:zlib';
import type { Session as ChdbSession } from './chdb.ts';

/** URL parameters that are not ClickHouse settings. */
const NOT_SETTINGS = new Set([
  'query',
  'query_id',
  'database',
  'session_id',
  'role',
  'user',
  'password',
  'default_format',
]);
/** Settings that only concern the HTTP layer; the engine does not need them. */
const HTTP_ONLY = new Set([
  'enable_http_compression',
  'http_headers_progress_interval_ms',
  'send_progress_in_http_headers',
  'wait_end_of_query',
  'http_zlib_compression_level',
]);

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  return req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
}

/** `INSERT ... FORMAT <name>`, split before its format so the data can be named as a file. */
const INSERT_WITH_FORMAT = /^(\s*INSERT\s+INTO\s[\s\S]*?)(\s+FORMAT\s+\w+\s*)$/i;

function errorCode(message: string): string {
  return /Code: (\d+)/.exec(message)?.[1] ?? '1000';
}

export function serve(opts: { host: string; port: number; path: string; chdb: string }) {
  const { Session } = createRequire(import.meta.url)(opts.chdb) as { Session: new (path: string) => ChdbSession };
  const session = new Session(opts.path);
  const inserts = mkdtempSync(join(tmpdir(), 'walflow-chdb-inserts-'));
  let insertFiles = 0;
  let queue: Promise<unknown> = Promise.resolve();
  let currentDb = 'default';

  /**
   * Runs one statement in the session, after every earlier request. Settings become SET
   * statements first (so, unlike a server, they stay set in the session).
   */
  const run = (database: string, settings: string[], sql: string, params: Record<string, string>) => {
    const task = queue.then(async () => {
      if (database !== currentDb) {
        await session.queryBindAsync('USE {db:Identifier}', { db: database }, { format: 'TabSeparated' });
        currentDb = database;
      }
      if (settings.length) await session.queryAsync(`SET ${settings.join(', ')}`, { format: 'TabSeparated' });
      const result = Object.keys(params).length
        ? await session.queryBindAsync(sql, params, { format: 'TabSeparated' })
        : await session.queryAsync(sql, { format: 'TabSeparated' });
      return result;
    });
    queue = task.catch(() => undefined);
    return task;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/ping' || (url.pathname === '/' && req.method === 'GET' && !url.searchParams.has('query'))) {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=UTF-8' }).end('Ok.\n');
      return;
    }
    const queryId = url.searchParams.get('query_id') ?? crypto.randomUUID();
    const params: Record<string, string> = {};
    const settings: string[] = [];
    for (const [k, v] of url.searchParams) {
      if (k.startsWith('param_')) params[k.slice(6)] = v;
      else if (!NOT_SETTINGS.has(k) && !HTTP_ONLY.has(k) && /^[a-z0-9_]+$/.test(k))
        settings.push(`${k} = ${/^-?\d+(\.\d+)?$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`}`);
    }
    const inUrl = url.searchParams.get('query');
    const data = req.method === 'POST' ? await body(req) : Buffer.alloc(0);
    // An INSERT names its format in `query=` and sends the rows in the body. The engine reads them from a file
    // (FROM INFILE), as a server streams them: parsed inline, after the query's text, they take 2.5 times as long.
    const insert = inUrl && data.length ? INSERT_WITH_FORMAT.exec(inUrl) : null;
    const file = insert ? join(inserts, `${++insertFiles}.data`) : undefined;
    if (file) writeFileSync(file, data);
    const text = insert ? '' : data.toString('utf8');
    const inline = inUrl ? (text ? `${inUrl}\n${text}` : inUrl) : text;
    const sql = insert ? `${insert[1]} FROM INFILE '${file}'${insert[2]}` : inline;
    try {
      const started = Date.now();
      const result = await run(url.searchParams.get('database') ?? 'default', settings, sql, params);
      const summary = {
        read_rows: String(result.rowsRead),
        read_bytes: String(result.bytesRead),
        written_rows: '0',
        written_bytes: '0',
        total_rows_to_read: '0',
        result_rows: '0',
        result_bytes: '0',
        elapsed_ns: String((Date.now() - started) * 1e6),
      };
      res
        .writeHead(200, {
          'Content-Type': 'text/plain; charset=UTF-8',
          'X-ClickHouse-Query-Id': queryId,
          'X-ClickHouse-Summary': JSON.stringify(summary),
        })
        .end(Buffer.from(result.bytes()));
    } catch (e) {
      const message = (e as Error).message.replace(/^Query failed: /, '').replace(` (in file/uri ${file})`, '');
      res
        .writeHead(500, {
          'Content-Type': 'text/plain; charset=UTF-8',
          'X-ClickHouse-Query-Id': queryId,
          'X-ClickHouse-Exception-Code': errorCode(message),
        })
        .end(`${message}\n`);
    } finally {
      if (file) rmSync(file, { force: true });
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e) =>
      res.writeHead(500).end(`Code: 1000. DB::Exception: ${(e as Error).message} (STD_EXCEPTION)\n`),
    );
  });
  server.listen(opts.port, opts.host);
  return {
    server,
    close: () =>
      new Promise<void>((resolve) =>
        server.close(() => {
          session.cleanup?.();
          rmSync(inserts, { recursive: true, force: true });
          resolve();
        }),
      ),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      path: { type: 'string' },
      chdb: { type: 'string' },
    },
  });
  if (!values.port || !values.path || !values.chdb)
    throw new Error('usage: clickhouse-server.ts --port N --path DIR --chdb MODULE_DIR [--host H]');
  const { server, close } = serve({
    host: values.host!,
    port: Number(values.port),
    path: values.path,
    chdb: values.chdb,
  });
  server.on('listening', () => console.log(`clickhouse (chDB) listening on http://${values.host}:${values.port}`));
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      close().then(() => process.exit(0));
    });
}
