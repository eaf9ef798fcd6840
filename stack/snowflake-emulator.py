"""The stack's Snowflake emulator: fakesnow's server (DuckDB behind Snowflake's REST protocol), on loopback.

One compatibility layer sits in front of it, and nothing else is changed: fakesnow answers queries
with Arrow result sets, which the Node.js driver (snowflake-sdk) cannot decode; it reads only JSON
`rowset`s. `JsonResults` rewrites each Arrow answer into the JSON rowset real Snowflake sends to
that driver, value by value in Snowflake's JSON wire encoding (numbers as decimal text, DATE as days
since the epoch, TIME and TIMESTAMP_* as seconds with nine fractional digits, TIMESTAMP_TZ with its
offset index, BINARY as upper-case hex). It also adds the session parameters real Snowflake sends
with results, tells the driver to bind arrays inline (the emulator has no bind stage), and runs
array-bound INSERTs without re-transforming the statement for every row.

Usage: python snowflake-emulator.py --port N --data DIR
"""

from __future__ import annotations

import argparse
import base64
import datetime
import decimal
import json
import logging
import os

import pyarrow as pa
import uvicorn

import duckdb
import snowflake.connector.errors

import fakesnow.server as server
from fakesnow.cursor import FakeSnowflakeCursor
from fakesnow.instance import FakeSnow


# Session parameters real Snowflake sends with every result (its defaults); the driver formats
# dates, times and binary values with them, and fakesnow sends only TIMEZONE.
DEFAULT_PARAMETERS = {
    "BINARY_OUTPUT_FORMAT": "HEX",
    "DATE_OUTPUT_FORMAT": "YYYY-MM-DD",
    "TIME_OUTPUT_FORMAT": "HH24:MI:SS",
    "TIMESTAMP_OUTPUT_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF3 TZHTZM",
    "TIMESTAMP_NTZ_OUTPUT_FORMAT": "",
    "TIMESTAMP_LTZ_OUTPUT_FORMAT": "",
    "TIMESTAMP_TZ_OUTPUT_FORMAT": "",
}


def _seconds(epoch: int, fraction: int) -> str:
    return f"{epoch}.{fraction:09d}"


def json_value(value: object, logical_type: str, scale: int) -> str | None:
    """One Arrow value (in the layout fakesnow.arrow.to_sf produces) as Snowflake's JSON text."""
    if value is None:
        return None
    if logical_type == "BOOLEAN":
        return "1" if value else "0"
    if logical_type == "FIXED":
        if isinstance(value, decimal.Decimal):
            return f"{value:.{scale}f}"
        return str(value)
    if logical_type == "REAL":
        return repr(float(value))  # type: ignore[arg-type]
    if logical_type == "DATE":
        return str(((value - datetime.date(1970, 1, 1)).days))  # type: ignore[operator]
    if logical_type == "TIME":
        return _seconds(int(value) // 1_000_000_000, int(value) % 1_000_000_000)  # type: ignore[call-overload]
    if logical_type.startswith("TIMESTAMP"):
        ts = value  # {"epoch", "fraction"[, "timezone"]}
        text = _seconds(ts["epoch"], ts["fraction"])  # type: ignore[index]
        return f"{text} {ts['timezone']}" if logical_type == "TIMESTAMP_TZ" else text  # type: ignore[index]
    if logical_type == "BINARY":
        return bytes(value).hex().upper()  # type: ignore[call-overload]
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def arrow_to_rowset(b64: str) -> list[list[str | None]]:
    if not b64:
        return []
    reader = pa.ipc.open_stream(base64.b64decode(b64))
    table = reader.read_all()
    columns = []
    for field, column in zip(table.schema, table.columns):
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        logical_type, scale = meta.get("logicalType", "TEXT"), int(meta.get("scale", "0"))
        columns.append([json_value(v, logical_type, scale) for v in column.to_pylist()])
    return [list(row) for row in zip(*columns)]


# The emulator has no bind stage (CREATE STAGE SYSTEM$BIND, PUT). fakesnow's login advertises 0, which
# the Python connector reads as "never stage"; the Node.js driver reads it as "always stage", tries,
# fails and falls back to inline binds. Advertise a threshold no batch reaches instead.
INLINE_BIND_THRESHOLD = 2**31 - 1


def rewrite(path: str, doc: dict) -> bool:
    """Rewrites one JSON answer in place; True if it changed."""
    data = doc.get("data") or {}
    if path.startswith("/session/v1/login-request"):
        for p in data.get("parameters", []):
            if p["name"] == "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD":
                p["value"] = INLINE_BIND_THRESHOLD
        return True
    if data.get("queryResultFormat") == "arrow":
        data["rowset"] = arrow_to_rowset(data.pop("rowsetBase64", ""))
        data["queryResultFormat"] = "json"
    if "rowset" not in data:
        return False
    # the driver reads the row count of a result from `returned`, which fakesnow leaves out
    data["returned"] = len(data["rowset"])
    data.setdefault("version", 1)
    names = {p["name"] for p in data.setdefault("parameters", [])}
    data["parameters"] += [{"name": k, "value": v} for k, v in DEFAULT_PARAMETERS.items() if k not in names]
    return True


class JsonResults:
    """ASGI middleware: rewrites fakesnow's answers where the Node.js driver needs (see `rewrite`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(("/queries/v1/query-request", "/session/v1/login-request")):
            return await self.app(scope, receive, send)
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    await send_rewritten()

        async def send_rewritten():
            body = b"".join(chunks)
            try:
                doc = json.loads(body)
                if rewrite(scope["path"], doc):
                    body = json.dumps(doc).encode()
            except Exception:  # never leave the driver without an answer
                logging.getLogger("walflow.emulator").exception("cannot rewrite the answer to %s", scope["path"])
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


# fakesnow's server runs an array-bound INSERT as one execute per row, and parsing and transforming
# the same statement again for every row costs milliseconds each: a 10,000-row batch took minutes.
# The first row goes through fakesnow (which also leaves the cursor ready to describe the result);
# the DuckDB statement it made is reused for the request's other rows.
_fakesnow_execute = FakeSnowflakeCursor.execute


def execute_reusing_inserts(self, command, params=None, *args, **kwargs):
    row = kwargs.get("binding_params")
    if not (kwargs.get("server") and row is not None and command.lstrip()[:6].upper() == "INSERT"):
        return _fakesnow_execute(self, command, params, *args, **kwargs)
    prepared = getattr(self, "_walflow_prepared", None)
    if prepared is None or prepared[0] != command:
        result = _fakesnow_execute(self, command, params, *args, **kwargs)
        self._walflow_prepared = (command, self._last_transformed.sql(dialect="duckdb"))
        return result
    try:
        self._duck_conn.execute(prepared[1], list(row))
    except duckdb.Error as e:  # as fakesnow reports it: an error answer, not a server failure
        raise snowflake.connector.errors.ProgrammingError(msg=str(e).split("\n")[0], errno=100038, sqlstate="22018") from e
    self._rowcount = 1
    return self


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="folder for the databases (survive a restart)")
    args = parser.parse_args()
    os.makedirs(args.data, exist_ok=True)
    # A file-backed instance instead of fakesnow's in-memory default, so data survives a restart.
    server.shared_fs = FakeSnow(db_path=args.data)
    FakeSnowflakeCursor.execute = execute_reusing_inserts
    uvicorn.run(JsonResults(server.app), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
