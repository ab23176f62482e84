#!/usr/bin/env python3
"""RAG retrieval: the k notes nearest to a question's embedding, for one user.

    TOKEN=$(python3 examples/mint_token.py --secret-file ... --tenant st_marys \\
            --role clinician --sub dr.okafor --purpose treatment)
    PYTHONPATH=clients/python TOKEN=$TOKEN python3 examples/rag_query.py "dbname=clinic user=app" 0.9,0.1,0

The query vector is a bind parameter of type evector_query: never encrypted,
never stored, never printed by EXPLAIN; the ehnsw index answers the ORDER BY.
Only the notes of the token's tenant, in categories its role is granted, can
come back, and the scan with the rows it returned is in vecphi.audit_log.
"""
import os
import sys

import psycopg

import vecphi_client as vecphi


def nearest_notes(conn, token, query_vector, k=5, ef_search=None):
    """[(id, category, text, distance)] for the k nearest notes."""
    with vecphi.claims(conn, token):
        if ef_search is not None:
            conn.execute("SELECT pg_catalog.set_config('vecphi.ef_search', %s, true)",
                         (str(ef_search),))
        return conn.execute(
            "SELECT id, category, vecphi.decrypt(body), embedding <-> %s AS distance "
            "FROM notes ORDER BY embedding <-> %s LIMIT %s",
            (vecphi.QueryVector(query_vector), vecphi.QueryVector(query_vector), k)).fetchall()


def main():
    conninfo, vector = sys.argv[1], [float(x) for x in sys.argv[2].split(",")]
    with psycopg.connect(conninfo) as conn:
        vecphi.register(conn)
        for row in nearest_notes(conn, os.environ["TOKEN"], vector):
            print(*row, sep="\t")


if __name__ == "__main__":
    main()
