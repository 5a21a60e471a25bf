"""Runs the fleet queries on an embedded ClickHouse (chdb).

Input: argv[1] the otel_logs DDL (deploy/queries/otel_logs.sql), argv[2] a
JSON-lines file of otel_logs rows (as the Collector's clickhouse exporter
writes them), argv[3] a JSON list of {"name", "file", "params"}.
Output: one JSON object on stdout, {name: [row, ...]} (JSONEachRow rows).
Invariants: every query runs in one session against the same table; a
query that ClickHouse rejects fails the run (exit 1, its error on stderr).
Run with TZ=UTC: DateTime64 parameters and columns are then UTC.
"""
import json
import sys

from chdb import session


def main():
    ddl_path, rows_path, specs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    s = session.Session()
    with open(ddl_path) as f:
        s.query(f.read())
    with open(rows_path) as f:
        rows = f.read()
    columns = "Timestamp, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, LogAttributes, EventName, SeverityText, SeverityNumber, Body"
    if rows.strip():
        s.query(f"INSERT INTO otel_logs ({columns}) FORMAT JSONEachRow\n{rows}")
    count = int(str(s.query("SELECT count() FROM otel_logs", "CSV")).strip())
    out = {"_rows": count}
    for spec in specs:
        with open(spec["file"]) as f:
            sql = f.read()
        result = s.query(sql, "JSONEachRow", params=spec.get("params") or {})
        text = str(result)
        out[spec["name"]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
