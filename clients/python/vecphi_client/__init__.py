"""vecphi helpers for psycopg 3.

    import psycopg
    import vecphi_client as vecphi      # PYTHONPATH=clients/python

(The package is not called "vecphi": run from the source tree after a build,
Python would try to import the server module vecphi.so under that name.)

    conn = psycopg.connect("dbname=clinic user=app")
    vecphi.register(conn)                     # numpy arrays go as query vectors, in binary
    with vecphi.claims(conn, token):          # one transaction, claims verified by the server
        conn.execute("INSERT INTO notes (category, body, embedding) VALUES (%s, %s, %s)",
                     ("clinical", "chest pain", vecphi.Embedding([0.9, 0.1, 0.0])))
        rows = conn.execute("SELECT id, vecphi.decrypt(body) FROM notes "
                            "ORDER BY embedding <-> %s LIMIT 5", ([1.0, 0.0, 0.0],)).fetchall()

What goes where:
- A value written into an evector column is encrypted by the server under the
  token's tenant: pass it as ``Embedding(values)`` (or a ``'[...]'`` string),
  which is sent as text of no declared type, so the server reads it as evector.
- A query vector needs no encryption: a Python list goes as float8[] and a
  numpy array (after ``register``) or ``QueryVector(values)`` as
  ``evector_query``; either way ``embedding <-> %s`` uses the ehnsw index.
- The token is always a bind parameter of ``vecphi.set_claims``, never part of
  the SQL text; the claims last until the transaction ends, so they are safe
  behind transaction-mode poolers.
"""
from contextlib import contextmanager
import math
import struct

from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo

__all__ = ["register", "claims", "Embedding", "QueryVector", "to_text", "to_binary"]


def _floats(values):
    """The values as a list of Python floats; refuses NaN and infinity here,
    so the error names the client's input rather than a server round trip."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    out = [float(v) for v in values]
    for v in out:
        if math.isnan(v) or math.isinf(v):
            raise ValueError("vecphi: a vector may not hold NaN or infinity")
    if not out:
        raise ValueError("vecphi: a vector needs at least one dimension")
    return out


def to_text(values) -> str:
    """The vector text form, '[1.5,2,3]', with each float4 exactly kept."""
    return "[" + ",".join(repr(v) for v in _floats(values)) + "]"


def to_binary(values) -> bytes:
    """The binary form of evector_query (pgvector's vector layout): int16
    dimensions, int16 zero, then each value as a big-endian float4."""
    floats = _floats(values)
    if len(floats) > 32767:
        raise ValueError("vecphi: too many dimensions for one vector")
    return struct.pack("!hh%df" % len(floats), len(floats), 0, *floats)


class Embedding:
    """A vector to store: encrypted by the server into an evector column."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


class QueryVector:
    """A query vector, sent as plaintext evector_query (never stored)."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


class _EmbeddingDumper(Dumper):
    # oid 0: the server infers evector from the column or operator.
    format = Format.TEXT
    oid = 0

    def dump(self, obj):
        return to_text(obj.values).encode()


class _QueryTextDumper(Dumper):
    format = Format.TEXT

    def dump(self, obj):
        values = obj.values if isinstance(obj, QueryVector) else obj
        return to_text(values).encode()


class _QueryBinaryDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj):
        values = obj.values if isinstance(obj, QueryVector) else obj
        return to_binary(values)


def register(context):
    """Register the adapters on a connection or cursor: Embedding as text for
    evector, QueryVector and numpy arrays (when numpy is installed) as
    evector_query in binary (or text when the caller asks for %t)."""
    conn = getattr(context, "connection", context)
    info = TypeInfo.fetch(conn, "evector_query")
    if info is None:
        raise RuntimeError("vecphi: type evector_query not found; is the vecphi extension "
                           "(0.2.0 or later) installed in this database?")
    adapters = context.adapters
    adapters.register_dumper(Embedding, _EmbeddingDumper)
    text = type("_QueryText", (_QueryTextDumper,), {"oid": info.oid})
    binary = type("_QueryBinary", (_QueryBinaryDumper,), {"oid": info.oid})
    for cls in (QueryVector, "numpy.ndarray"):
        adapters.register_dumper(cls, text)
        adapters.register_dumper(cls, binary)


@contextmanager
def claims(conn, token):
    """A transaction in which the token's verified claims hold.

    The token is passed as a bind parameter (never in the SQL text); a bad or
    expired token raises psycopg.errors.InvalidAuthorizationSpecification
    (SQLSTATE 28000) and nothing runs."""
    with conn.transaction():
        conn.execute(sql.SQL("SELECT vecphi.set_claims(%s)"), (token,))
        yield conn
