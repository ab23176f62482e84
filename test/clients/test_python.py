#!/usr/bin/python3
"""psycopg 3 against a live vecphi server: clients/python and examples/.

Run by test/t/175_clients.pl, which starts the server, creates database
clinic (tenants st_marys and county, table notes protected by
vecphi.protect(), an ehnsw index, login role app) and sets PGHOST, PGPORT,
VECPHI_SECRET_FILE and VECPHI_REPO.  Exit status 0 when every test passed.
"""
import math
import os
import subprocess
import sys
import unittest

REPO = os.environ["VECPHI_REPO"]
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
sys.path.insert(0, os.path.join(REPO, "examples"))

import numpy  # noqa: E402
import psycopg  # noqa: E402
from psycopg import errors  # noqa: E402

import vecphi_client as vecphi  # noqa: E402
import mint_token  # noqa: E402
import rag_query  # noqa: E402
import bulk_load  # noqa: E402
import break_glass  # noqa: E402

CONNINFO = "dbname=clinic user=app"
SECRET_FILE = os.environ["VECPHI_SECRET_FILE"]


def token(tenant="st_marys", role="clinician", sub="dr.py", **extra):
    args = ["--secret-file", SECRET_FILE, "--tenant", tenant, "--role", role, "--sub", sub,
            "--purpose", "treatment"]
    if "break_glass" in extra:
        args += ["--break-glass", extra["break_glass"]]
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "mint_token.py")] + args,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def count_rows(tenant="st_marys"):
    with psycopg.connect("dbname=clinic") as su:   # the superuser: sees every row
        return su.execute("SELECT count(*) FROM notes WHERE tenant = %s", (tenant,)).fetchone()[0]


class Clients(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.conn = psycopg.connect(CONNINFO, autocommit=True)
        vecphi.register(cls.conn)
        cls.tok = token()
        rows = [("clinical", "py note %d" % i, [float(i), float(i % 3), 1.0]) for i in range(1, 41)]
        cls.loaded = bulk_load.bulk_load(cls.conn, cls.tok, rows, 3)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def nearest(self, param, prepare=None, cursor_factory=None):
        conn = self.conn
        with vecphi.claims(conn, self.tok):
            cur = conn.cursor() if cursor_factory is None else cursor_factory(conn)
            cur.execute("SELECT id, vecphi.decrypt(body) FROM notes ORDER BY embedding <-> %s LIMIT 3",
                        (param,), prepare=prepare)
            return [r[1] for r in cur.fetchall()]

    def plan(self, param):
        with vecphi.claims(self.conn, self.tok):
            # A few dozen rows: the planner may rightly prefer a sequential scan.
            self.conn.execute("SET LOCAL enable_seqscan = off")
            return "\n".join(r[0] for r in self.conn.execute(
                "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM notes ORDER BY embedding <-> %s LIMIT 3",
                (param,)).fetchall())

    def test_bulk_load(self):
        self.assertEqual(self.loaded, 40)

    def test_query_forms_agree_and_use_the_index(self):
        expected = ["py note 7", "py note 8", "py note 6"]
        forms = {
            "text": "[7,1,1]",
            "list": [7.0, 1.0, 1.0],
            "list of ints (smallint[])": [7, 1, 1],
            "numpy float32": numpy.array([7, 1, 1], dtype=numpy.float32),
            "numpy float64": numpy.array([7, 1, 1], dtype=numpy.float64),
            "QueryVector": vecphi.QueryVector([7, 1, 1]),
        }
        for name, param in forms.items():
            with self.subTest(form=name):
                self.assertEqual(self.nearest(param)[:1], expected[:1])
                self.assertEqual(sorted(self.nearest(param)), sorted(expected))
                plan = self.plan(param)
                self.assertIn("Index Scan using notes_embedding_idx", plan)
                # EXPLAIN VERBOSE shows the parameter's constant, never its values.
                self.assertNotIn("7,1,1", plan.replace(" ", ""))

    def test_integer_lists(self):
        # psycopg sends small ints as smallint[], larger ones as integer[] or bigint[].
        self.assertEqual(self.nearest([40, 1, 1])[0], "py note 40")        # smallint[]
        self.assertEqual(self.nearest([40000, 1, 1])[0], "py note 40")     # integer[]
        self.assertEqual(len(self.nearest([2**40, 1, 1])), 3)              # bigint[]

    def test_prepared_and_simple_protocol(self):
        expected = self.nearest([7.0, 1.0, 1.0])
        for _ in range(7):   # past psycopg's prepare threshold and the generic plan switch
            self.assertEqual(self.nearest([7.0, 1.0, 1.0], prepare=True), expected)
            self.assertEqual(self.nearest(numpy.array([7, 1, 1], dtype=numpy.float32), prepare=True),
                             expected)
        # The simple query protocol: the client merges the values into the text.
        self.assertEqual(self.nearest([7.0, 1.0, 1.0], cursor_factory=psycopg.ClientCursor), expected)
        self.assertEqual(self.nearest("[7,1,1]", cursor_factory=psycopg.ClientCursor), expected)

    def test_rag_query_example(self):
        rows = rag_query.nearest_notes(self.conn, self.tok, [7, 1, 1], k=2, ef_search=80)
        self.assertEqual(len(rows), 2)
        self.assertEqual(rows[0][2], "py note 7")
        self.assertAlmostEqual(rows[0][3], 0.0)

    def test_writes_round_trip(self):
        with vecphi.claims(self.conn, self.tok):
            row = self.conn.execute(
                "INSERT INTO notes (category, body, embedding) VALUES (%s, %s, %s) "
                "RETURNING vecphi.decrypt(embedding), vecphi.key_id(embedding)",
                ("clinical", "written by psycopg", vecphi.Embedding(numpy.array([0.25, -1.5, 3.0])))).fetchone()
        self.assertEqual(row[0], [0.25, -1.5, 3.0])
        self.assertTrue(row[1].startswith("st_marys/"))

    def assert_refused(self, sqlstate_prefixes, sql, params):
        before = count_rows()
        with self.assertRaises(psycopg.Error) as cm:
            with vecphi.claims(self.conn, self.tok):
                self.conn.execute(sql, params)
        self.assertIsNotNone(cm.exception.sqlstate, str(cm.exception))
        self.assertTrue(cm.exception.sqlstate.startswith(tuple(sqlstate_prefixes.split("|"))),
                        "%s: %s" % (cm.exception.sqlstate, cm.exception))
        self.assertEqual(count_rows(), before, "nothing written")
        return cm.exception

    def test_bad_query_vectors(self):
        q = "SELECT id FROM notes ORDER BY embedding <-> %s LIMIT 3"
        self.assert_refused("22", q, ([1.0, 2.0],))                      # wrong dimension
        self.assert_refused("22", q, ([1.0, float("nan"), 2.0],))         # NaN from a list
        self.assert_refused("22", q, ([1.0, float("inf"), 2.0],))         # infinity
        self.assert_refused("22", q, ([1.0] * 20000,))                    # too many dimensions
        self.assert_refused("22", q, ([1.0, None, 2.0],))                 # NULL element
        self.assert_refused("22", q, ("[1,2",))                           # malformed text
        self.assert_refused("22|42", q, (["a", "b", "c"],))               # wrong type (strings)
        with self.assertRaises(ValueError):
            vecphi.to_binary([1.0, math.nan, 2.0])                        # caught in the client

    def test_bad_writes(self):
        ins = "INSERT INTO notes (category, body, embedding) VALUES ('clinical', 'x', %s)"
        self.assert_refused("22", ins, ("[1,2]",))                        # wrong dimension
        self.assert_refused("22", ins, ("[1,NaN,2]",))
        self.assert_refused("22", ins, (vecphi.Embedding([1.0] * 4),))
        self.assert_refused("42", ins, (numpy.array([1, 2, 3], dtype=numpy.float32),))  # a query vector is not storable

    def test_bad_token(self):
        before = count_rows()
        with self.assertRaises(errors.InvalidAuthorizationSpecification):
            with vecphi.claims(self.conn, self.tok[:-4] + "AAAA"):
                self.conn.execute("INSERT INTO notes (category, body, embedding) VALUES ('clinical', 'x', '[1,2,3]')")
        self.assertEqual(count_rows(), before)

    def test_other_tenant_sees_nothing(self):
        other = token(tenant="county", sub="dr.county")
        with vecphi.claims(self.conn, other):
            rows = self.conn.execute("SELECT id FROM notes ORDER BY embedding <-> %s LIMIT 3",
                                     ([7.0, 1.0, 1.0],)).fetchall()
        self.assertEqual(rows, [])

    def test_break_glass_example(self):
        with psycopg.connect("dbname=clinic") as su:
            note_id = su.execute("SELECT id FROM notes WHERE category = 'psych' AND tenant = 'st_marys'").fetchone()[0]
        with self.assertRaises(PermissionError):
            break_glass.read_note(self.conn, self.tok, note_id)
        with vecphi.claims(self.conn, self.tok):
            self.assertIsNone(self.conn.execute("SELECT id FROM notes WHERE id = %s", (note_id,)).fetchone())
        bg = token(break_glass="unconscious patient, ED bed 4")
        self.assertEqual(break_glass.read_note(self.conn, bg, note_id), ("psych", "sealed psych note"))
        with psycopg.connect("dbname=clinic") as su:
            flagged = su.execute("SELECT count(*) FROM vecphi.audit_log WHERE break_glass "
                                 "AND action = 'decrypt'").fetchone()[0]
        self.assertGreater(flagged, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
