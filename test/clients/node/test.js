'use strict';
/*
 * node-postgres against a live vecphi server: clients/node.
 *
 * Run by test/t/175_clients.pl (node --test), which starts the server and
 * creates database clinic as for test/clients/test_python.py; PGHOST and
 * PGPORT name the server, VECPHI_REPO the source tree, VECPHI_SECRET_FILE
 * the token secret.
 */
const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { Client, Pool } = require('pg');

const repo = process.env.VECPHI_REPO;
const vecphi = require(path.join(repo, 'clients', 'node'));

function token(tenant = 'st_marys', sub = 'dr.node') {
	return execFileSync('/usr/bin/python3', [path.join(repo, 'examples', 'mint_token.py'),
		'--secret-file', process.env.VECPHI_SECRET_FILE, '--tenant', tenant,
		'--role', 'clinician', '--sub', sub, '--purpose', 'treatment'], { encoding: 'utf8' }).trim();
}

async function countRows(tenant = 'st_marys') {
	const su = new Client({ database: 'clinic' });
	await su.connect();
	try {
		const { rows } = await su.query('SELECT count(*)::int AS n FROM notes WHERE tenant = $1', [tenant]);
		return rows[0].n;
	} finally {
		await su.end();
	}
}

/* The SQLSTATE an awaited query rejects with, after checking nothing was written. */
async function refused(client, tok, sql, params) {
	const before = await countRows();
	let err = null;
	try {
		await vecphi.withClaims(client, tok, (c) => c.query(sql, params));
	} catch (e) {
		err = e;
	}
	assert.ok(err, 'the statement was refused');
	assert.strictEqual(await countRows(), before, 'nothing written');
	assert.ok(err.code, 'a server error with a SQLSTATE, got: ' + err);
	return err.code;
}

let client;
let tok;

test.before(async () => {
	client = new Client({ database: 'clinic', user: 'app' });
	await client.connect();
	tok = token();
	await vecphi.withClaims(client, tok, async (c) => {
		for (let i = 1; i <= 20; i++)
			await c.query('INSERT INTO notes (category, body, embedding) VALUES ($1, $2, $3)',
				['clinical', 'node note ' + i, vecphi.toSql([100 + i, i % 3, 2])]);
	});
});

test.after(async () => {
	await client.end();
});

const nearest = 'SELECT vecphi.decrypt(body) AS body FROM notes ORDER BY embedding <-> %s LIMIT 3';

test('every parameter form finds the same rows through the index', async () => {
	const forms = {
		'untyped text': ['$1', vecphi.toSql([107, 1, 2])],
		'JS array as real[]': ['$1::real[]', [107, 1, 2]],
		'JS array as float8[]': ['$1::float8[]', [107, 1, 2]],
		'Float32Array text': ['$1::evector_query', vecphi.toSql(new Float32Array([107, 1, 2]))],
		'binary Buffer': ['$1::evector_query', vecphi.queryBuffer(new Float32Array([107, 1, 2]))],
	};
	for (const [name, [p, value]] of Object.entries(forms)) {
		const got = await vecphi.withClaims(client, tok, async (c) => {
			// A few dozen rows: without this the planner may rightly prefer a
			// sequential scan and sort.
			await c.query('SET LOCAL enable_seqscan = off');
			const plan = await c.query('EXPLAIN (VERBOSE, COSTS OFF) ' + nearest.replace('%s', p), [value]);
			const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
			assert.match(text, /Index Scan using notes_embedding_idx/, name + ': uses the index');
			assert.doesNotMatch(text.replace(/ /g, ''), /107,1,2/, name + ': EXPLAIN shows no values');
			return (await c.query(nearest.replace('%s', p), [value])).rows.map((r) => r.body);
		});
		assert.strictEqual(got[0], 'node note 7', name);
		assert.deepStrictEqual(got.slice().sort(), ['node note 6', 'node note 7', 'node note 8'], name);
	}
});

test('named prepared statements (extended protocol, reused plan)', async () => {
	for (let i = 0; i < 7; i++) {
		const got = await vecphi.withClaims(client, tok, (c) => c.query({
			name: 'nearest_node',
			text: nearest.replace('%s', '$1::real[]'),
			values: [[107, 1, 2]],
		}));
		assert.strictEqual(got.rows[0].body, 'node note 7');
	}
});

test('a pool client works; the pool itself is refused (claims need one connection)', async () => {
	const pool = new Pool({ database: 'clinic', user: 'app', max: 2 });
	try {
		const c = await pool.connect();
		try {
			const r = await vecphi.withClaims(c, tok, (x) => x.query('SELECT vecphi.tenant() AS t'));
			assert.strictEqual(r.rows[0].t, 'st_marys');
		} finally {
			c.release();
		}
		await assert.rejects(vecphi.withClaims(pool, tok, async () => 1), TypeError);
	} finally {
		await pool.end();
	}
});

test('bad input gets a class 22 or 42 SQLSTATE and writes nothing', async () => {
	const q = nearest.replace('%s', '$1');
	const ins = "INSERT INTO notes (category, body, embedding) VALUES ('clinical', 'x', $1)";
	assert.match(await refused(client, tok, nearest.replace('%s', '$1::real[]'), [[1, 2]]), /^22/);
	assert.match(await refused(client, tok, nearest.replace('%s', '$1::real[]'), [[1, NaN, 2]]), /^22/);
	assert.match(await refused(client, tok, nearest.replace('%s', '$1::real[]'), [[1, null, 2]]), /^22/);
	assert.match(await refused(client, tok, q, ['[1,2']), /^22/);
	assert.match(await refused(client, tok, ins, ['[1,2]']), /^22/);
	assert.match(await refused(client, tok, ins, ['[1,Infinity,2]']), /^22/);
	// A raw Float32Array or Buffer, sent without the helper, is no vector.
	assert.match(await refused(client, tok, ins, [new Float32Array([1, 2, 3])]), /^22/);
	assert.match(await refused(client, tok, q, [Buffer.from([1, 2, 3])]), /^22/);
	// Bytes of the wrong length for evector_query's binary layout.
	assert.match(await refused(client, tok, nearest.replace('%s', '$1::evector_query'),
		[vecphi.queryBuffer([1, 2, 3]).subarray(0, 10)]), /^22/);
	assert.match(await refused(client, tok, nearest.replace('%s', '$1::text[]'), [['a', 'b', 'c']]), /^42/);
	assert.throws(() => vecphi.toSql([1, NaN]), RangeError);
	assert.throws(() => vecphi.queryBuffer([]), RangeError);
});

test('a bad token: 28000 and the transaction rolled back', async () => {
	const before = await countRows();
	await assert.rejects(
		vecphi.withClaims(client, tok.slice(0, -4) + 'AAAA', (c) =>
			c.query("INSERT INTO notes (category, body, embedding) VALUES ('clinical', 'x', '[1,2,3]')")),
		(e) => e.code === '28000');
	assert.strictEqual(await countRows(), before);
	// The connection is usable afterwards, outside any transaction.
	const r = await client.query('SELECT vecphi.tenant() AS t');
	assert.strictEqual(r.rows[0].t, null);
});

test('an error inside withClaims rolls back what it wrote', async () => {
	const before = await countRows();
	await assert.rejects(vecphi.withClaims(client, tok, async (c) => {
		await c.query("INSERT INTO notes (category, body, embedding) VALUES ('clinical', 'x', '[1,2,3]')");
		throw new Error('application failure');
	}), /application failure/);
	assert.strictEqual(await countRows(), before);
});

test('another tenant sees none of these rows', async () => {
	const r = await vecphi.withClaims(client, token('county', 'dr.county'), (c) =>
		c.query(nearest.replace('%s', '$1::real[]'), [[107, 1, 2]]));
	assert.deepStrictEqual(r.rows, []);
});
