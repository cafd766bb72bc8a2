// PostgreSQL for the tests, through Debian's psql (installed with the server):
// which store the suite runs on (CHATD_TEST_STORE), a fresh database per
// started chatd, one-shot queries, and a psql session fed on stdin that holds
// a transaction open while a test does something else.
//
// CHATD_TEST_STORE is `sqlite` (the default) or a PostgreSQL base URI, e.g.
// the one `scripts/postgres.sh url` prints. Its role needs CREATEDB: every
// chatd the harness starts gets its own database chatd_t_<random>, created
// from that URI and dropped when the server stops.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';

export const TEST_STORE = process.env.CHATD_TEST_STORE || 'sqlite';
const PG_RE = /^postgres(ql)?:\/\//;
/** The PostgreSQL base URI the suite runs on, or null on SQLite. */
export const PG_BASE = PG_RE.test(TEST_STORE) ? TEST_STORE : null;
export const ON_PG = PG_BASE !== null;
if (!ON_PG && TEST_STORE !== 'sqlite') throw new Error(`CHATD_TEST_STORE: "sqlite" or a postgres:// URI, not ${JSON.stringify(TEST_STORE)}`);

/**
 * Options for test() of a test that only means something on SQLite (files in
 * the data dir, their modes, the data dir lock): skipped on PostgreSQL with the reason.
 */
export const sqliteOnly = (why) => (ON_PG ? { skip: `SQLite only (${why})` } : {});
/** Options for test() of a test that needs PostgreSQL: skipped on SQLite. */
export const pgOnly = () => (ON_PG ? {} : { skip: 'needs CHATD_TEST_STORE=<postgres URI> (scripts/test.sh stage pg-multinode)' });

/** The URI of database `db` on the server of `base` (same user, host, options). */
export function dbUri(base, db) {
  const u = new URL(base);
  u.pathname = `/${db}`;
  return u.toString();
}

const PSQL = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1'];

/** Runs SQL through psql on uri and returns its unaligned output (rows by \n, fields by |); throws on an error. */
export function psql(uri, sql, { timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn('psql', [...PSQL, '-F', '|', '-d', uri], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => {
      clearTimeout(t);
      reject(new Error(`psql: ${e.message} (is postgresql-client installed?)`));
    });
    p.on('exit', (code, signal) => {
      clearTimeout(t);
      if (code === 0) resolve(out.replace(/\n$/, ''));
      else reject(new Error(`psql exited ${code ?? signal}: ${err.trim()}\nSQL: ${sql.slice(0, 500)}`));
    });
    p.stdin.end(sql.endsWith('\n') ? sql : `${sql}\n`);
  });
}

/** Rows of a query as arrays of strings. */
export async function rows(uri, sql) {
  const out = await psql(uri, sql);
  return out === '' ? [] : out.split('\n').map((l) => l.split('|'));
}

/** Creates an empty database on the server of base; returns {name, uri}. */
export async function createDb(base = PG_BASE) {
  const name = `chatd_t_${crypto.randomBytes(6).toString('hex')}`;
  try {
    await psql(base, `CREATE DATABASE ${name};`);
  } catch (e) {
    throw new Error(`cannot create a test database from CHATD_TEST_STORE=${base} (the role needs CREATEDB): ${e.message}`);
  }
  return { name, uri: dbUri(base, name) };
}

/**
 * Drops a database made by createDb, even with sessions left in it. WITH (FORCE)
 * terminates those sessions, and PostgreSQL 15 refuses when one of them is not the
 * role's own: an autovacuum worker that happens to be in the database (seen once
 * in a CI run under ASan, "must be a member of the role whose process is being
 * terminated"). Such a worker ends by itself within moments, so that refusal is
 * retried for up to 10 s; every other error is thrown at once.
 */
export async function dropDb(name, base = PG_BASE) {
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      return await psql(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE);`);
    } catch (e) {
      if (!/must be a member of the role whose process is being terminated/.test(e.message) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** The same, synchronously: for process 'exit' handlers. */
export function dropDbSync(name, base = PG_BASE) {
  spawnSync('psql', [...PSQL, '-d', base, '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE);`], { stdio: 'ignore', timeout: 5000 });
}

/**
 * A psql session fed on stdin, for holding a transaction open: run(sql)
 * sends statements and resolves with their output once a marker echoed after
 * them comes back (psql flushes after each statement), so the statements have
 * completed when it resolves. close() ends stdin (psql exits; an open
 * transaction is rolled back) and kills it by PID after 5 s.
 */
export class PsqlSession {
  constructor(uri) {
    this.p = spawn('psql', [...PSQL, '-F', '|', '-d', uri], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.out = '';
    this.err = '';
    this.n = 0;
    this.waiters = [];
    this.exit = new Promise((resolve) => this.p.on('exit', (code, signal) => resolve({ code, signal })));
    this.exited = null;
    this.exit.then((x) => {
      this.exited = x;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`psql exited (${x.code ?? x.signal}): ${this.err.trim()}`));
    });
    this.p.on('error', () => {});
    this.p.stdout.setEncoding('utf8').on('data', (d) => {
      this.out += d;
      this.poll();
    });
    this.p.stderr.setEncoding('utf8').on('data', (d) => {
      this.err += d;
    });
  }

  poll() {
    for (const w of [...this.waiters]) {
      const i = this.out.indexOf(w.mark);
      if (i < 0) continue;
      const got = this.out.slice(0, i).replace(/\n$/, '');
      this.out = this.out.slice(i + w.mark.length + 1);
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve(got);
    }
  }

  /** Runs statements; resolves with their output when they are done. */
  run(sql, timeoutMs = 15000) {
    const mark = `__psql_done_${++this.n}__`;
    return new Promise((resolve, reject) => {
      if (this.exited) return reject(new Error(`psql already exited: ${this.err.trim()}`));
      const t = setTimeout(() => reject(new Error(`psql: no answer in ${timeoutMs} ms to ${sql.slice(0, 200)}; stderr: ${this.err.trim()}`)), timeoutMs);
      this.waiters.push({
        mark,
        resolve: (v) => {
          clearTimeout(t);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.p.stdin.write(`${sql.trimEnd()}\n\\echo ${mark}\n`);
    });
  }

  /** The backend PID of this session (for pg_locks / pg_stat_activity checks). */
  async backendPid() {
    return Number(await this.run('SELECT pg_backend_pid();'));
  }

  async close() {
    if (this.exited) return this.exited;
    this.p.stdin.end();
    const t = setTimeout(() => {
      try {
        process.kill(this.p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 5000);
    const x = await this.exit;
    clearTimeout(t);
    return x;
  }
}
