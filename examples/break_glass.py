#!/usr/bin/env python3
"""A break-glass read: an emergency read of every category of the user's own
tenant, with the reason recorded.

    TOKEN=$(python3 examples/mint_token.py --secret-file ... --tenant st_marys \\
            --role clinician --sub dr.okafor --purpose treatment \\
            --break-glass "unconscious patient, ED bed 4")
    PYTHONPATH=clients/python TOKEN=$TOKEN python3 examples/break_glass.py "dbname=clinic user=app" 42

Your identity provider decides who may get such a token (and for how short a
time).  The server widens access only to categories of the token's own
tenant, and every scan and decryption under it is flagged in
vecphi.audit_log (break_glass = true, with the reason) for the security
officer's review.
"""
import os
import sys

import psycopg

import vecphi_client as vecphi


def read_note(conn, token, note_id):
    """(category, text) of one note, or None when the claims do not reach it."""
    with vecphi.claims(conn, token):
        reason = conn.execute("SELECT vecphi.break_glass()").fetchone()[0]
        if reason is None:
            raise PermissionError("the token carries no break_glass reason")
        return conn.execute("SELECT category, vecphi.decrypt(body) FROM notes WHERE id = %s",
                            (note_id,)).fetchone()


def main():
    conninfo, note_id = sys.argv[1], int(sys.argv[2])
    with psycopg.connect(conninfo) as conn:
        print(read_note(conn, os.environ["TOKEN"], note_id))


if __name__ == "__main__":
    main()
