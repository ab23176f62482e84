#!/usr/bin/env python3
"""A tenant's bulk load into a protected table, as the application role.

    PYTHONPATH=clients/python TOKEN=$TOKEN python3 examples/bulk_load.py "dbname=clinic user=app" notes.tsv

Each line of the file: category <TAB> text <TAB> v1,v2,...  Everything is
encrypted by the server under the token's tenant.

PostgreSQL refuses COPY FROM into a table under row-level security, so the
rows are copied into a temporary table of the same encrypted types (the
values are encrypted as they arrive: the temporary table holds ciphertext
only) and moved with one INSERT ... SELECT, which the policies check row by
row.  The whole load is one transaction: all rows or none.
"""
import os
import sys

import psycopg

import vecphi_client as vecphi


def bulk_load(conn, token, rows, dimensions):
    """Load (category, text, vector) rows; return how many were inserted."""
    with vecphi.claims(conn, token):
        conn.execute(
            "CREATE TEMPORARY TABLE vecphi_load (category text, body etext, "
            "embedding evector(%d)) ON COMMIT DROP" % int(dimensions))
        with conn.cursor().copy("COPY vecphi_load (category, body, embedding) FROM STDIN") as copy:
            for category, text, vector in rows:
                copy.write_row((category, text, vecphi.to_text(vector)))
        cur = conn.execute("INSERT INTO notes (category, body, embedding) "
                           "SELECT category, body, embedding FROM vecphi_load")
        return cur.rowcount


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            category, text, vector = line.rstrip("\n").split("\t")
            yield category, text, [float(x) for x in vector.split(",")]


def main():
    conninfo, path = sys.argv[1], sys.argv[2]
    rows = list(read_rows(path))
    with psycopg.connect(conninfo) as conn:
        n = bulk_load(conn, os.environ["TOKEN"], rows, len(rows[0][2]) if rows else 1)
    print("loaded", n, "rows")


if __name__ == "__main__":
    main()
