'use strict';
/*
 * vecphi helpers for node-postgres (the `pg` package).
 *
 *   const vecphi = require('vecphi');        // this directory
 *   await vecphi.withClaims(client, token, async (c) => {
 *     await c.query('INSERT INTO notes (category, body, embedding) VALUES ($1, $2, $3)',
 *                   ['clinical', 'chest pain', vecphi.toSql([0.9, 0.1, 0.0])]);
 *     const { rows } = await c.query(
 *       'SELECT id, vecphi.decrypt(body) AS body FROM notes ORDER BY embedding <-> $1::real[] LIMIT 5',
 *       [[1, 0, 0]]);
 *   });
 *
 * What goes where:
 * - A value written into an evector column is encrypted by the server under the
 *   token's tenant: pass toSql(values), the '[...]' text, which node-postgres
 *   sends untyped, so the server reads it as evector.
 * - A query vector needs no encryption: a JS array cast in the SQL
 *   (`$1::real[]`), toSql(values) cast as `$1::evector_query`, or the binary
 *   form queryBuffer(values) cast as `$1::evector_query`; each uses the ehnsw
 *   index and is never encrypted.  (An untyped '[...]' also works: the server
 *   then reads it as evector and encrypts it first, which costs a little more.)
 * - The token is always a bind parameter of vecphi.set_claims(), never part of
 *   the SQL text; the claims last until the transaction ends.
 */

function floats(values) {
	if (values == null || typeof values.length !== 'number')
		throw new TypeError('vecphi: a vector must be an array or a typed array of numbers');
	if (values.length === 0)
		throw new RangeError('vecphi: a vector needs at least one dimension');
	const out = new Array(values.length);
	for (let i = 0; i < values.length; i++) {
		const v = Number(values[i]);
		if (!Number.isFinite(v))
			throw new RangeError('vecphi: a vector may not hold NaN, infinity or non-numbers');
		out[i] = v;
	}
	return out;
}

/* The vector text form, '[1.5,2,3]'. */
function toSql(values) {
	return '[' + floats(values).join(',') + ']';
}

/*
 * The binary form of evector_query (pgvector's vector layout): int16
 * dimensions, int16 zero, then big-endian float4 values.  node-postgres sends
 * a Buffer in binary; the SQL names the type: `$1::evector_query`.
 */
function queryBuffer(values) {
	const f = floats(values);
	if (f.length > 32767)
		throw new RangeError('vecphi: too many dimensions for one vector');
	const buf = Buffer.alloc(4 + 4 * f.length);
	buf.writeInt16BE(f.length, 0);
	buf.writeInt16BE(0, 2);
	for (let i = 0; i < f.length; i++)
		buf.writeFloatBE(f[i], 4 + 4 * i);
	return buf;
}

/*
 * Run fn(client) in a transaction in which the token's verified claims hold.
 * A bad or expired token rejects with SQLSTATE 28000 and nothing runs; any
 * error in fn rolls the transaction back.  Give it a client checked out of a
 * pool (pool.connect()), not the pool itself: the claims belong to one
 * connection's transaction.
 */
async function withClaims(client, token, fn) {
	if (typeof client.release === 'undefined' && typeof client.totalCount === 'number')
		throw new TypeError('vecphi: withClaims needs one client (await pool.connect()), not a pool');
	await client.query('BEGIN');
	try {
		await client.query('SELECT vecphi.set_claims($1)', [token]);
		const result = await fn(client);
		await client.query('COMMIT');
		return result;
	} catch (err) {
		try {
			await client.query('ROLLBACK');
		} catch (ignored) {
			/* the connection is gone; the server rolled back */
		}
		throw err;
	}
}

module.exports = { toSql, queryBuffer, withClaims };
