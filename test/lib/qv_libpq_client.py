#!/usr/bin/env python3
# vecphi: a query vector sent as drivers send it, through libpq's extended
# protocol (Parse/Bind/Execute with typed parameters, text and binary),
# for test/t/140_query_vector_protocol.pl.  libpq through ctypes, so no
# driver package is needed.
#
# Usage: qv_libpq_client.py CONNINFO TOKEN
# Prints one "name: value" line per check; the TAP test compares them.
import ctypes
import struct
import sys

pq = ctypes.CDLL("libpq.so.5")
pq.PQconnectdb.restype = ctypes.c_void_p
pq.PQconnectdb.argtypes = [ctypes.c_char_p]
pq.PQstatus.argtypes = [ctypes.c_void_p]
pq.PQerrorMessage.restype = ctypes.c_char_p
pq.PQerrorMessage.argtypes = [ctypes.c_void_p]
pq.PQexecParams.restype = ctypes.c_void_p
pq.PQexecParams.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                            ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_char_p),
                            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.c_int]
pq.PQprepare.restype = ctypes.c_void_p
pq.PQprepare.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                         ctypes.POINTER(ctypes.c_uint)]
pq.PQexecPrepared.restype = ctypes.c_void_p
pq.PQexecPrepared.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_int),
                              ctypes.POINTER(ctypes.c_int), ctypes.c_int]
pq.PQresultStatus.argtypes = [ctypes.c_void_p]
pq.PQresultErrorField.restype = ctypes.c_char_p
pq.PQresultErrorField.argtypes = [ctypes.c_void_p, ctypes.c_int]
pq.PQntuples.argtypes = [ctypes.c_void_p]
pq.PQnfields.argtypes = [ctypes.c_void_p]
pq.PQgetvalue.restype = ctypes.c_char_p
pq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
pq.PQclear.argtypes = [ctypes.c_void_p]
pq.PQfinish.argtypes = [ctypes.c_void_p]

PGRES_COMMAND_OK = 1
PGRES_TUPLES_OK = 2
PG_DIAG_SQLSTATE = ord("C")
FLOAT4ARRAY = 1021
FLOAT8ARRAY = 1022

conn = pq.PQconnectdb(sys.argv[1].encode())
if pq.PQstatus(conn) != 0:
    sys.exit("connection failed: " + pq.PQerrorMessage(conn).decode())
token = sys.argv[2].encode()


def params(values):
    """ctypes arrays for a list of (oid, bytes, format)."""
    n = len(values)
    types = (ctypes.c_uint * n)(*[v[0] for v in values])
    vals = (ctypes.c_char_p * n)(*[v[1] for v in values])
    lens = (ctypes.c_int * n)(*[len(v[1]) for v in values])
    fmts = (ctypes.c_int * n)(*[v[2] for v in values])
    return n, types, vals, lens, fmts


def result(res):
    """Rows as a list of tuples, or the SQLSTATE of the error."""
    status = pq.PQresultStatus(res)
    if status == PGRES_TUPLES_OK:
        rows = [tuple(pq.PQgetvalue(res, i, j).decode() for j in range(pq.PQnfields(res)))
                for i in range(pq.PQntuples(res))]
    elif status == PGRES_COMMAND_OK:
        rows = "ok"
    else:
        rows = "ERROR " + pq.PQresultErrorField(res, PG_DIAG_SQLSTATE).decode()
    pq.PQclear(res)
    return rows


def run(sql, values=()):
    n, types, vals, lens, fmts = params(list(values))
    return result(pq.PQexecParams(conn, sql.encode(), n, types, vals, lens, fmts, 0))


def ids(rows):
    return ",".join(r[0] for r in rows) if isinstance(rows, list) else rows


def binary_array(oid_elem, fmt, xs):
    """PostgreSQL's binary array format, one dimension, no NULLs."""
    out = struct.pack(">iiiii", 1, 0, oid_elem, len(xs), 1)
    for x in xs:
        out += struct.pack(">i" + fmt, struct.calcsize(fmt), x)
    return out


q = [0.8765432, 1.9876543, 0.4567891]
q_text = ",".join(repr(x) for x in q)

print("begin:", run("BEGIN"))
print("claims:", run("SELECT vecphi.set_claims($1)", [(25, token, 0)]) and "set")
print("seqscan_off:", run("SET LOCAL enable_seqscan = off"))
qoid = int(run("SELECT 'evector_query'::regtype::oid")[0][0])
evoid = int(run("SELECT 'evector'::regtype::oid")[0][0])

sql = "SELECT id FROM qv ORDER BY emb <-> $1 LIMIT 5"
run("SET LOCAL enable_indexscan = off")
run("SET LOCAL enable_seqscan = on")
exact = ids(run("SELECT id FROM qv WHERE tenant = 'qv_a' ORDER BY l2_distance(emb, $1) LIMIT 5",
                [(qoid, ("[" + q_text + "]").encode(), 0)]))
run("SET LOCAL enable_indexscan = on")
run("SET LOCAL enable_seqscan = off")
print("exact:", exact)

forms = {
    "float8_text": (FLOAT8ARRAY, ("{" + q_text + "}").encode(), 0),
    "float8_binary": (FLOAT8ARRAY, binary_array(701, "d", q), 1),
    "float4_text": (FLOAT4ARRAY, ("{" + q_text + "}").encode(), 0),
    "float4_binary": (FLOAT4ARRAY, binary_array(700, "f", q), 1),
    "query_text": (qoid, ("[" + q_text + "]").encode(), 0),
    "query_binary": (qoid, struct.pack(">hh3f", 3, 0, *q), 1),
    "untyped_text": (0, ("[" + q_text + "]").encode(), 0),
}
for name, value in forms.items():
    plan = run("EXPLAIN (VERBOSE, COSTS OFF) " + sql, [value])
    plan_text = "\n".join(r[0] for r in plan)
    uses_index = "Index Scan using qv_l2" in plan_text
    shows_values = any(s in plan_text for s in ("0.87654", "1.98765", "0.45678"))
    print("%s: same=%s index=%s shows_values=%s" % (
        name, ids(run(sql, [value])) == exact, uses_index, shows_values))

    # A server-side prepared statement: the first executions get custom
    # plans, later ones the generic plan.
    stmt = ("qv_" + name).encode()
    types = (ctypes.c_uint * 1)(value[0])
    prep = result(pq.PQprepare(conn, stmt, sql.encode(), 1, types))
    same = True
    for i in range(8):
        n, _, vals, lens, fmts = params([value])
        same = same and ids(result(pq.PQexecPrepared(conn, stmt, n, vals, lens, fmts, 0))) == exact
    print("%s_prepared: %s same=%s" % (name, prep, same))

# Generic plans, forced: the plan (EXPLAIN EXECUTE with a NULL argument,
# so no value is in any statement) and the rows.
run("SET LOCAL plan_cache_mode = force_generic_plan")
for name in ("float8_text", "float4_binary", "query_binary"):
    plan = run("EXPLAIN (VERBOSE, COSTS OFF) EXECUTE qv_%s(NULL)" % name)
    stmt = ("qv_" + name).encode()
    n, _, vals, lens, fmts = params([forms[name]])
    rows = ids(result(pq.PQexecPrepared(conn, stmt, n, vals, lens, fmts, 0)))
    print("%s_generic: index=%s same=%s" % (
        name, any("Index Scan using qv_l2" in r[0] for r in plan), rows == exact))
run("SET LOCAL plan_cache_mode = auto")

# Bad input: clear SQLSTATEs, nothing written, no crash.  Each in a
# savepoint, so the transaction (and its claims) goes on.
def bad(sql, values):
    run("SAVEPOINT bad")
    r = run(sql, values)
    run("ROLLBACK TO SAVEPOINT bad")
    return r


f32 = struct.pack("<3f", *q)
print("float32array_as_evector:", bad(sql, [(evoid, f32, 1)]))
print("pgvector_binary_as_evector:", bad(sql, [(evoid, struct.pack(">hh3f", 3, 0, *q), 1)]))
print("query_binary_short:", bad(sql, [(qoid, struct.pack(">hh2f", 3, 0, 1, 2), 1)]))
print("query_binary_nan:", bad(sql, [(qoid, struct.pack(">hh3f", 3, 0, 1, float("nan"), 2), 1)]))
print("wrong_dimension:", bad(sql, [(FLOAT8ARRAY, b"{1,2}", 0)]))
print("null_element:", bad(sql, [(FLOAT8ARRAY, b"{1,NULL,2}", 0)]))
print("nan_element:", bad(sql, [(FLOAT8ARRAY, b"{1,NaN,2}", 0)]))
print("infinite_element:", bad(sql, [(FLOAT8ARRAY, b"{1,Infinity,2}", 0)]))
print("too_long:", bad(sql, [(FLOAT8ARRAY, ("{" + ",".join(["1"] * 16001) + "}").encode(), 0)]))
print("two_dimensional:", bad(sql, [(FLOAT8ARRAY, b"{{1,2,3},{4,5,6}}", 0)]))
print("text_array:", bad("SELECT id FROM qv ORDER BY emb <-> $1::text[] LIMIT 5", [(1009, b"{a,b,c}", 0)]))
run("ROLLBACK")
run("BEGIN")
run("SELECT vecphi.set_claims($1)", [(25, token, 0)])
print("insert_query:", run("INSERT INTO qv VALUES (999, 'qv_a', $1)", [(qoid, struct.pack(">hh3f", 3, 0, *q), 1)]))
run("ROLLBACK")
print("rows:", run("SELECT count(*) FROM qv")[0][0])
pq.PQfinish(conn)
