/* store_pg: the PostgreSQL backend of store (store_backend.h), for
 * deployments where several chatd nodes share one database.
 *
 * One handle = one libpq connection, used by one storage thread (store.c
 * runs a writer handle and --store-connections - 1 reader handles). A pass
 * (store.c's group of requests) is sent in libpq's pipeline mode, every
 * statement prepared once per connection, as one implicit transaction:
 * the statements, then a Sync, which commits. So a pass of N sends costs
 * about one round trip, and nothing is acknowledged before the Sync's
 * answer says the transaction committed. Each write op is ONE statement,
 * most of them a server function created by the migrations (chatd_send,
 * chatd_read, chatd_user_external, ...), so no statement of a pipeline
 * needs the result of another.
 *
 * Sequence (store.h): chatd_send takes the conversation's counter row in
 * `threads` first (its row lock orders the writers of one conversation,
 * also across nodes), only then checks (from_id, client_msg_id) for a
 * stored duplicate, allocates the id with nextval and seq = last_seq + 1.
 * A pass's runs of consecutive sends are executed sorted by conversation,
 * so two nodes' passes lock the rows they share in the same order; the
 * remaining deadlocks (PostgreSQL aborts one pass) end in store.c's
 * one-by-one re-run. The same client_msg_id sent at once to another
 * conversation on another node no longer aborts the pass: chatd_send_batch
 * catches the unique violation and numbers again, and the send answers
 * the other node's message (migration 2).
 *
 * Groups (store.h "Groups", migration 5): every group op is one call of a
 * server function (chatd_group_send, chatd_group_add, ...) answering
 * (o_status, o_result JSON), so they pipeline like the rest and a pass may
 * hold several of one group, run in order in its transaction. A change of
 * a group, a send included, first locks the group's row (chatd_group_lock),
 * which orders the group's writers across nodes; the seq comes from the
 * threads row (0, group id) under that lock, so it stays gapless and in
 * commit order, and a limit like max_members is checked under it. Read
 * and mute touch only the member's row; a pass reading a group on one node
 * while the same user sends to it on another can deadlock, as a 1:1 read
 * and send can: PostgreSQL aborts one pass and store.c re-runs it request
 * by request.
 *
 * Nothing is cached across requests: users, tokens and revoked JWTs are
 * read from the database every time, because another node may change
 * them.
 *
 * Failure: a failed connect or a lost connection answers the pass (and a
 * Sync whose answer never came, i.e. a commit of unknown outcome) with
 * STORE_UNAVAILABLE; the connection is reopened at the next request or
 * health probe, no sooner than a backoff of 100 ms doubling to 2 s.
 * Every wait is bounded: libpq's connect_timeout (2 s) a connect, and
 * ANSWER_TIMEOUT_MS (5 s) the answer of a pass or of a connection's
 * set-up, after which the connection is cancelled and dropped and the
 * pass answers STORE_UNAVAILABLE; the sessions' lock_timeout and
 * statement_timeout end most such waits a little earlier on the server's
 * side (also STORE_UNAVAILABLE, not a one-by-one re-run). Keepalives and
 * the TCP user timeout only notice a server that is gone. Durability: PostgreSQL's commit is
 * what counts; --durability normal sets synchronous_commit = off for the
 * writer's session (a crash of PostgreSQL's machine may lose the last
 * commits, never corrupt), full keeps the server's setting (on by
 * default). */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/names.h"
#include "core/log.h"
#include "store/store_backend.h"

/* Taken around the migrations, so N nodes starting at once migrate once.
 * Any constant works as long as nothing else in the database uses it:
 * "chatd" in ASCII. */
#define MIGRATION_LOCK 0x6368617464LL

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

/* The longest a storage thread waits for PostgreSQL's answer to a pass (or
 * to a connection's set-up): then the pass answers STORE_UNAVAILABLE, the
 * server is asked to cancel and the connection is dropped. A live server
 * that does not answer (a row lock held by a stuck session, a stopped
 * backend) must turn into 503s, not into a writer blocked forever behind
 * which every send waits. The server's own limits sit a little below, so
 * the usual case (a lock wait) ends with PostgreSQL's error, the
 * transaction surely rolled back, before our deadline: lock_timeout first,
 * statement_timeout for everything else. */
#define ANSWER_TIMEOUT_MS 5000
#define LOCK_TIMEOUT_MS 4000
#define STATEMENT_TIMEOUT_MS 4500

/* Migration i takes the schema from version i to i + 1. Append only. */
static const char *const migrations[] = {
    /* 1: the whole schema of the sequence model. */
    "CREATE TABLE users("
    "  id bigserial PRIMARY KEY,"
    "  username text NOT NULL,"
    "  password_hash text,"
    "  userpic text NOT NULL DEFAULT '',"
    "  external_id text UNIQUE,"
    "  created_at bigint NOT NULL,"
    "  name_key text NOT NULL UNIQUE);"
    "CREATE TABLE tokens("
    "  hash bytea PRIMARY KEY,"
    "  user_id bigint NOT NULL,"
    "  expires_at bigint NOT NULL);"
    "CREATE TABLE revoked_jwts("
    "  hash bytea PRIMARY KEY,"
    "  expires_at bigint NOT NULL);"
    "CREATE INDEX revoked_jwts_expiry ON revoked_jwts(expires_at);"
    /* One counter row per conversation: its row lock is what orders the
     * writers of a conversation; last_seq is the newest seq. */
    "CREATE TABLE threads("
    "  conv_lo bigint NOT NULL,"
    "  conv_hi bigint NOT NULL,"
    "  last_seq bigint NOT NULL,"
    "  PRIMARY KEY(conv_lo, conv_hi));"
    "CREATE SEQUENCE messages_id_seq;"
    /* As in SQLite: the only indexes a send touches are dedup and the
     * conversation's (which serves history and sync by seq). */
    "CREATE TABLE messages("
    "  id bigint PRIMARY KEY,"
    "  seq bigint NOT NULL,"
    "  from_id bigint NOT NULL,"
    "  to_id bigint NOT NULL,"
    "  conv_lo bigint NOT NULL,"
    "  conv_hi bigint NOT NULL,"
    "  type text NOT NULL,"
    "  data text NOT NULL,"
    "  time bigint NOT NULL,"
    "  client_msg_id text);"
    "CREATE UNIQUE INDEX messages_client ON messages(from_id, client_msg_id)"
    "  WHERE client_msg_id IS NOT NULL;"
    "CREATE UNIQUE INDEX messages_conv_seq ON messages(conv_lo, conv_hi, seq);"
    "CREATE TABLE conversations("
    "  user_id bigint NOT NULL,"
    "  peer_id bigint NOT NULL,"
    "  last_message_id bigint NOT NULL,"
    "  unread bigint NOT NULL DEFAULT 0,"
    "  last_read_id bigint NOT NULL DEFAULT 0,"
    "  last_in_id bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(user_id, peer_id));"
    /* SQLite's lower(): ASCII only, whatever the database's locale. */
    "CREATE FUNCTION chatd_lower(t text) RETURNS text LANGUAGE sql IMMUTABLE STRICT"
    "  PARALLEL SAFE AS"
    "  $$SELECT translate(t, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')$$;"
    /* The sends of a pass (store.h STORE_MESSAGE_SEND), as parallel
     * arrays; one row per send, o_ord its 1-based place, o_status 1 when
     * the sender or recipient does not exist (nothing written for it).
     * First the conversations' counter rows are locked, in (conv_lo,
     * conv_hi) order, so two nodes' passes cannot deadlock on them; the
     * next statement (READ COMMITTED: a new snapshot, which sees whatever
     * committed while we waited) finds duplicates of stored messages and
     * of earlier sends of the same pass (same sender and client_msg_id),
     * numbers the others last_seq + 1, 2, ... per conversation in pass
     * order, takes their ids in that order (so id order = seq order within
     * a conversation), inserts them and moves the counters and both users'
     * conversation rows once per conversation. A new message's row carries
     * only id and seq (the caller has the rest); a duplicate's carries the
     * stored message. */
    "CREATE FUNCTION chatd_send_batch(p_from bigint[], p_to bigint[], p_type text[],"
    "  p_data text[], p_time bigint[], p_cmid text[]) RETURNS TABLE(o_ord bigint,"
    "  o_status int, o_id bigint, o_seq bigint, o_from_username text, o_from_userpic text,"
    "  o_dup boolean, o_to bigint, o_type text, o_data text, o_time bigint)"
    "  LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  INSERT INTO threads AS t (conv_lo, conv_hi, last_seq)\n"
    "    SELECT DISTINCT least(x.f, x.r), greatest(x.f, x.r), 0::bigint\n"
    "      FROM unnest(p_from, p_to) AS x(f, r)\n"
    "     WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = x.f)\n"
    "       AND EXISTS (SELECT 1 FROM users u WHERE u.id = x.r)\n"
    "     ORDER BY 1, 2\n"
    "    ON CONFLICT (conv_lo, conv_hi) DO UPDATE SET last_seq = t.last_seq;\n"
    "  RETURN QUERY\n"
    "  WITH b0 AS (\n"
    "    SELECT x.ord, x.f, x.r, x.ty, x.da, x.ti, x.cm,\n"
    "           least(x.f, x.r) AS lo, greatest(x.f, x.r) AS hi,\n"
    "           fu.username AS fname, fu.userpic AS fpic,\n"
    "           (fu.id IS NOT NULL AND EXISTS (SELECT 1 FROM users tu WHERE tu.id = x.r)) AS ok\n"
    "      FROM unnest(p_from, p_to, p_type, p_data, p_time, p_cmid) WITH ORDINALITY\n"
    "           AS x(f, r, ty, da, ti, cm, ord)\n"
    "      LEFT JOIN users fu ON fu.id = x.f),\n"
    "  b AS (\n"
    "    SELECT b0.*, m.id AS old_id, m.seq AS old_seq, m.to_id AS old_to,\n"
    "           m.type AS old_type, m.data AS old_data, m.time AS old_time,\n"
    "           CASE WHEN b0.cm IS NULL OR NOT b0.ok THEN 1 ELSE\n"
    "             row_number() OVER (PARTITION BY b0.f, b0.cm, b0.ok ORDER BY b0.ord) END AS rnk\n"
    "      FROM b0 LEFT JOIN messages m ON b0.ok AND b0.cm IS NOT NULL\n"
    "           AND m.from_id = b0.f AND m.client_msg_id = b0.cm),\n"
    "  fresh AS (\n"
    "    SELECT b.ord, b.f, b.r, b.ty, b.da, b.ti, b.cm, b.lo, b.hi, b.fname, b.fpic,\n"
    "           t.last_seq + row_number() OVER (PARTITION BY b.lo, b.hi ORDER BY b.ord) AS seq\n"
    "      FROM b JOIN threads t ON t.conv_lo = b.lo AND t.conv_hi = b.hi\n"
    "     WHERE b.ok AND b.rnk = 1 AND b.old_id IS NULL),\n"
    "  ids AS (\n"
    "    SELECT s.*, nextval('messages_id_seq') AS id FROM (SELECT * FROM fresh ORDER BY ord) s),\n"
    "  ins AS (\n"
    "    INSERT INTO messages(id, seq, from_id, to_id, conv_lo, conv_hi, type, data, time,\n"
    "      client_msg_id) SELECT id, seq, f, r, lo, hi, ty, da, ti, cm FROM ids),\n"
    "  thr AS (\n"
    "    UPDATE threads t SET last_seq = t.last_seq + c.n\n"
    "      FROM (SELECT lo, hi, count(*) AS n FROM ids GROUP BY lo, hi) c\n"
    "     WHERE t.conv_lo = c.lo AND t.conv_hi = c.hi),\n"
    "  cv AS (\n"
    "    INSERT INTO conversations AS c (user_id, peer_id, last_message_id, unread, last_in_id)\n"
    "      SELECT z.u, z.p, max(z.id), sum(z.unr), max(z.inid) FROM (\n"
    "        SELECT ids.f AS u, ids.r AS p, ids.id, 0 AS unr, 0::bigint AS inid FROM ids\n"
    "        UNION ALL SELECT ids.r, ids.f, ids.id, 1, ids.id FROM ids) z\n"
    "      GROUP BY z.u, z.p ORDER BY z.u, z.p\n"
    "    ON CONFLICT (user_id, peer_id) DO UPDATE SET\n"
    "      last_message_id = greatest(c.last_message_id, excluded.last_message_id),\n"
    "      unread = c.unread + excluded.unread,\n"
    "      last_in_id = greatest(c.last_in_id, excluded.last_in_id))\n"
    /* every send once: stored now, refused, a duplicate of a stored
     * message, a duplicate of an earlier send of this pass (rare: the
     * only correlated lookup) */
    "  SELECT i.ord, 0, i.id, i.seq, i.fname, i.fpic, false, NULL::bigint, NULL::text,\n"
    "         NULL::text, NULL::bigint FROM ids i\n"
    "  UNION ALL\n"
    "  SELECT b.ord, 1, NULL, NULL, NULL, NULL, false, NULL, NULL, NULL, NULL\n"
    "    FROM b WHERE NOT b.ok\n"
    "  UNION ALL\n"
    "  SELECT b.ord, 0, b.old_id, b.old_seq, b.fname, b.fpic, true, b.old_to, b.old_type,\n"
    "         b.old_data, b.old_time FROM b WHERE b.ok AND b.rnk = 1 AND b.old_id IS NOT NULL\n"
    "  UNION ALL\n"
    "  SELECT b.ord, 0, d.id, d.seq, b.fname, b.fpic, true, d.to_id, d.type, d.data, d.time\n"
    "    FROM b CROSS JOIN LATERAL (\n"
    "      SELECT i.id, i.seq, i.r AS to_id, i.ty AS type, i.da AS data, i.ti AS time FROM ids i\n"
    "       WHERE i.f = b.f AND i.cm = b.cm\n"
    "      UNION ALL\n"
    "      SELECT b1.old_id, b1.old_seq, b1.old_to, b1.old_type, b1.old_data, b1.old_time\n"
    "        FROM b b1 WHERE b1.f = b.f AND b1.cm = b.cm AND b1.ok AND b1.rnk = 1\n"
    "         AND b1.old_id IS NOT NULL\n"
    "      LIMIT 1) d\n"
    "   WHERE b.ok AND b.rnk > 1\n"
    "  ORDER BY 1;\n"
    "END $$;"
    /* One send, for psql and tests (e.g. holding a send's transaction
     * open): the batch of one. */
    "CREATE FUNCTION chatd_send(p_from bigint, p_to bigint, p_type text, p_data text,"
    "  p_time bigint, p_cmid text) RETURNS TABLE(o_ord bigint, o_status int, o_id bigint,"
    "  o_seq bigint, o_from_username text, o_from_userpic text, o_dup boolean, o_to bigint,"
    "  o_type text, o_data text, o_time bigint) LANGUAGE sql AS"
    "  $$SELECT * FROM chatd_send_batch(ARRAY[p_from], ARRAY[p_to], ARRAY[p_type],"
    "  ARRAY[p_data], ARRAY[p_time], ARRAY[p_cmid])$$;"
    /* STORE_READ. o_status 1: no such peer. */
    "CREATE FUNCTION chatd_read(p_user bigint, p_peer bigint, OUT o_status int,"
    "  OUT o_total bigint, OUT o_last_read bigint, OUT o_changed boolean)"
    "  LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  li bigint; un bigint; lr bigint;\n"
    "BEGIN\n"
    "  IF NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p_peer) THEN\n"
    "    o_status := 1;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  o_status := 0;\n"
    "  SELECT c.last_in_id, c.unread, c.last_read_id INTO li, un, lr FROM conversations c\n"
    "    WHERE c.user_id = p_user AND c.peer_id = p_peer FOR UPDATE;\n"
    "  o_changed := FOUND AND (un <> 0 OR lr <> li);\n"
    "  o_last_read := coalesce(li, 0);\n"
    "  IF o_changed THEN\n"
    "    UPDATE conversations c SET unread = 0, last_read_id = li\n"
    "      WHERE c.user_id = p_user AND c.peer_id = p_peer;\n"
    "  END IF;\n"
    "  SELECT coalesce(sum(c.unread), 0) INTO o_total FROM conversations c"
    "    WHERE c.user_id = p_user;\n"
    "END $$;"
    /* STORE_USER_EXTERNAL (see store_sqlite.c's op_user_external for the
     * names): p_names and p_keys are the three candidates. o_status 1: the
     * JWT was revoked. A concurrent first sight of the same identity on
     * another node makes the insert find external_id taken: look again. */
    "CREATE FUNCTION chatd_user_external(p_ext text, p_names text[], p_keys text[],"
    "  p_pic text, p_time bigint, p_hash bytea, OUT o_status int, OUT o_id bigint,"
    "  OUT o_name text) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  cur_name text; cur_pic text;\n"
    "BEGIN\n"
    "  IF p_hash IS NOT NULL AND EXISTS (SELECT 1 FROM revoked_jwts r"
    "      WHERE r.hash = p_hash AND r.expires_at > p_time) THEN\n"
    "    o_status := 1;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  o_status := 0;\n"
    "  FOR attempt IN 1..2 LOOP\n"
    "    SELECT u.id, u.username, u.userpic INTO o_id, cur_name, cur_pic FROM users u\n"
    "      WHERE u.external_id = p_ext FOR UPDATE;\n"
    "    IF FOUND THEN\n"
    "      FOR i IN 1..3 LOOP\n"
    "        IF i = 3 OR cur_name <> p_names[i] OR cur_pic <> p_pic THEN\n"
    "          BEGIN\n"
    "            UPDATE users u SET username = p_names[i], userpic = p_pic,"
    "              name_key = p_keys[i] WHERE u.id = o_id;\n"
    "          EXCEPTION WHEN unique_violation THEN\n"
    "            CONTINUE;\n"
    "          END;\n"
    "        END IF;\n"
    "        o_name := p_names[i];\n"
    "        RETURN;\n"
    "      END LOOP;\n"
    "      RAISE EXCEPTION 'no free name for external user %', p_ext;\n"
    "    END IF;\n"
    "    FOR i IN 1..3 LOOP\n"
    "      INSERT INTO users(username, password_hash, userpic, external_id, created_at,"
    "        name_key) VALUES (p_names[i], NULL, p_pic, p_ext, p_time, p_keys[i])\n"
    "        ON CONFLICT DO NOTHING RETURNING id INTO o_id;\n"
    "      IF FOUND THEN\n"
    "        o_name := p_names[i];\n"
    "        RETURN;\n"
    "      END IF;\n"
    "      EXIT WHEN EXISTS (SELECT 1 FROM users u WHERE u.external_id = p_ext);\n"
    "    END LOOP;\n"
    "  END LOOP;\n"
    "  RAISE EXCEPTION 'no free name for external user %', p_ext;\n"
    "END $$;"
    /* STORE_JWT_REVOKE: purge the expired, then upsert. */
    "CREATE FUNCTION chatd_jwt_revoke(p_hash bytea, p_expires bigint, p_time bigint)"
    "  RETURNS void LANGUAGE sql AS $$"
    "  DELETE FROM revoked_jwts WHERE expires_at <= p_time;"
    "  INSERT INTO revoked_jwts AS r (hash, expires_at) VALUES (p_hash, p_expires)"
    "    ON CONFLICT (hash) DO UPDATE SET expires_at = greatest(r.expires_at, p_expires);"
    "$$;",
    /* 2: chatd_send_batch without aborting the pass on a unique violation.
     * The same (from_id, client_msg_id) sent at once to two DIFFERENT
     * conversations by two nodes: their counter rows do not order them, so
     * neither sees the other's row when it looks for a duplicate, and the
     * second insert waits for the first and then fails; that used to abort
     * its node's whole pass (which store.c then re-ran request by request).
     * Now the statement that numbers and inserts runs in a block that
     * catches unique_violation: the rollback to the block's start undoes
     * its writes (the seqs it took included: no hole) but keeps the counter
     * locks taken before it, and the statement runs again in a new
     * snapshot, which sees the other node's committed row, so that send
     * becomes a duplicate answered with the stored message (SQLite's rule:
     * dedup by sender and client_msg_id whatever the recipient). Not
     * ON CONFLICT DO NOTHING: its speculative insertion costs every row an
     * extra index probe and WAL record (measured ~16% of the send rate),
     * and a skipped row would leave a seq numbered before the insert
     * unused. The cost is one subtransaction per call (per run of sends
     * of a pass). The answer is read after the block, in its own
     * statement: rows returned inside it could not be taken back.
     * A new message's answer carries only id and seq (the caller has the
     * rest); a duplicate's carries the stored message; o_status 1: the
     * sender or recipient does not exist, 2: a duplicate whose stored
     * message cannot be found (cannot happen: messages are never
     * deleted). */
    "CREATE OR REPLACE FUNCTION chatd_send_batch(p_from bigint[], p_to bigint[],"
    "  p_type text[], p_data text[], p_time bigint[], p_cmid text[]) RETURNS TABLE(o_ord bigint,"
    "  o_status int, o_id bigint, o_seq bigint, o_from_username text, o_from_userpic text,"
    "  o_dup boolean, o_to bigint, o_type text, o_data text, o_time bigint)"
    "  LANGUAGE plpgsql AS $$\n"
    /* v_id[k], v_seq[k]: send k's new message (id > 0), or 0 (not
     * inserted: a duplicate), or -1 (refused). Arrays indexed by the
     * send's place, never joined on it: the planner cannot size the
     * unnests and a nested loop over them costs n^2. */
    "DECLARE\n"
    "  v_id bigint[]; v_seq bigint[];\n"
    "BEGIN\n"
    "  INSERT INTO threads AS t (conv_lo, conv_hi, last_seq)\n"
    "    SELECT DISTINCT least(x.f, x.r), greatest(x.f, x.r), 0::bigint\n"
    "      FROM unnest(p_from, p_to) AS x(f, r)\n"
    "     WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = x.f)\n"
    "       AND EXISTS (SELECT 1 FROM users u WHERE u.id = x.r)\n"
    "     ORDER BY 1, 2\n"
    "    ON CONFLICT (conv_lo, conv_hi) DO UPDATE SET last_seq = t.last_seq;\n"
    "  FOR attempt IN 1..3 LOOP\n"
    "  BEGIN\n"
    "  WITH b AS (\n"
    "    SELECT x.ord, x.f, x.r, x.ty, x.da, x.ti, x.cm,\n"
    "           least(x.f, x.r) AS lo, greatest(x.f, x.r) AS hi,\n"
    "           (fu.id IS NOT NULL AND EXISTS (SELECT 1 FROM users tu WHERE tu.id = x.r)) AS ok\n"
    "      FROM unnest(p_from, p_to, p_type, p_data, p_time, p_cmid) WITH ORDINALITY\n"
    "           AS x(f, r, ty, da, ti, cm, ord)\n"
    "      LEFT JOIN users fu ON fu.id = x.f),\n"
    /* fresh: not stored already, not an earlier send's of this pass */
    "  c AS (\n"
    "    SELECT b.*, (b.ok AND m.id IS NULL AND (b.cm IS NULL OR\n"
    "             row_number() OVER (PARTITION BY b.f, b.cm, b.ok ORDER BY b.ord) = 1)) AS fresh\n"
    "      FROM b LEFT JOIN messages m ON b.ok AND b.cm IS NOT NULL\n"
    "           AND m.from_id = b.f AND m.client_msg_id = b.cm),\n"
    "  n AS (\n"
    "    SELECT c.*, CASE WHEN c.fresh THEN t.last_seq + row_number() OVER\n"
    "             (PARTITION BY c.fresh, c.lo, c.hi ORDER BY c.ord) END AS seq\n"
    "      FROM c LEFT JOIN threads t ON c.fresh AND t.conv_lo = c.lo AND t.conv_hi = c.hi),\n"
    "  ids AS (\n"
    "    SELECT s.*, CASE WHEN s.fresh THEN nextval('messages_id_seq') END AS id\n"
    "      FROM (SELECT * FROM n ORDER BY ord) s),\n"
    "  ins AS (\n"
    "    INSERT INTO messages(id, seq, from_id, to_id, conv_lo, conv_hi, type, data, time,\n"
    "      client_msg_id) SELECT id, seq, f, r, lo, hi, ty, da, ti, cm FROM ids WHERE fresh),\n"
    "  thr AS (\n"
    "    UPDATE threads t SET last_seq = t.last_seq + c.n\n"
    "      FROM (SELECT lo, hi, count(*) AS n FROM ids WHERE fresh GROUP BY 1, 2) c\n"
    "     WHERE t.conv_lo = c.lo AND t.conv_hi = c.hi),\n"
    "  cv AS (\n"
    "    INSERT INTO conversations AS c (user_id, peer_id, last_message_id, unread, last_in_id)\n"
    "      SELECT z.u, z.p, max(z.id), sum(z.unr), max(z.inid) FROM (\n"
    "        SELECT i.f AS u, i.r AS p, i.id, 0 AS unr, 0::bigint AS inid FROM ids i\n"
    "         WHERE i.fresh\n"
    "        UNION ALL SELECT i.r, i.f, i.id, 1, i.id FROM ids i WHERE i.fresh) z\n"
    "      GROUP BY z.u, z.p ORDER BY z.u, z.p\n"
    "    ON CONFLICT (user_id, peer_id) DO UPDATE SET\n"
    "      last_message_id = greatest(c.last_message_id, excluded.last_message_id),\n"
    "      unread = c.unread + excluded.unread,\n"
    "      last_in_id = greatest(c.last_in_id, excluded.last_in_id))\n"
    "  SELECT array_agg(CASE WHEN i.fresh THEN i.id WHEN i.ok THEN 0 ELSE -1 END ORDER BY i.ord),\n"
    "         array_agg(coalesce(i.seq, 0) ORDER BY i.ord)\n"
    "    INTO v_id, v_seq FROM ids i;\n"
    "  EXIT;\n"
    /* only messages_client can be violated (seq is ours under the
     * counter locks, which the rollback to the block's start keeps) */
    "  EXCEPTION WHEN unique_violation THEN\n"
    "    IF attempt = 3 THEN\n"
    "      RAISE;\n"
    "    END IF;\n"
    "  END;\n"
    "  END LOOP;\n"
    "  RETURN QUERY\n"
    "  SELECT x.ord,\n"
    "         CASE WHEN v_id[x.ord::int] < 0 THEN 1\n"
    "           WHEN v_id[x.ord::int] = 0 AND d.id IS NULL THEN 2 ELSE 0 END,\n"
    "         CASE WHEN v_id[x.ord::int] > 0 THEN v_id[x.ord::int] ELSE d.id END,\n"
    "         CASE WHEN v_id[x.ord::int] > 0 THEN v_seq[x.ord::int] ELSE d.seq END,\n"
    "         fu.username, fu.userpic, v_id[x.ord::int] <= 0, d.to_id, d.type, d.data, d.time\n"
    "    FROM unnest(p_from, p_cmid) WITH ORDINALITY AS x(f, cm, ord)\n"
    "    LEFT JOIN users fu ON fu.id = x.f\n"
    "    LEFT JOIN LATERAL (SELECT m.id, m.seq, m.to_id, m.type, m.data, m.time FROM messages m\n"
    "       WHERE v_id[x.ord::int] = 0 AND x.cm IS NOT NULL AND m.from_id = x.f\n"
    "         AND m.client_msg_id = x.cm) d ON true\n"
    "   ORDER BY x.ord;\n"
    "END $$;",
    /* 3: admin (as SQLite's migration 5). disabled accounts; tokens_nbf
     * (ms), the last revoke: JWTs issued before it are refused. tokens by
     * user (revoke deletes them all) and by expiry (the background purge
     * seeks the oldest). User search is a prefix range on name_key in
     * byte order: the index in COLLATE "C" serves it whatever the
     * database's collation (the unique index uses that collation, in
     * which a range is not a prefix). The six-argument
     * chatd_user_external stays for nodes of the previous version during a
     * rolling upgrade; this version calls the new one. */
    "ALTER TABLE users ADD COLUMN disabled boolean NOT NULL DEFAULT false,"
    "  ADD COLUMN tokens_nbf bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX tokens_user ON tokens(user_id);"
    "CREATE INDEX tokens_expiry ON tokens(expires_at);"
    "CREATE INDEX users_name_key_c ON users(name_key COLLATE \"C\");"
    /* STORE_USER_EXTERNAL with the JWT's iat (ms, 0 = none): o_status 1
     * also for a disabled user and a JWT issued before the last revoke. */
    "CREATE FUNCTION chatd_user_external(p_ext text, p_names text[], p_keys text[],"
    "  p_pic text, p_time bigint, p_hash bytea, p_iat bigint, OUT o_status int,"
    "  OUT o_id bigint, OUT o_name text) LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  IF EXISTS (SELECT 1 FROM users u WHERE u.external_id = p_ext"
    "      AND (u.disabled OR p_iat < u.tokens_nbf)) THEN\n"
    "    o_status := 1;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT e.o_status, e.o_id, e.o_name INTO o_status, o_id, o_name"
    "    FROM chatd_user_external(p_ext, p_names, p_keys, p_pic, p_time, p_hash) e;\n"
    "END $$;"
    /* STORE_USER_ADMIN; p_action: enum store_admin_action. The user's row
     * lock orders it with STORE_TOKEN_CREATE's FOR SHARE, so no token
     * made by a login on another node outlives a revoke that committed
     * after it, and none is made for a disabled user. */
    "CREATE FUNCTION chatd_user_admin(p_user bigint, p_action int, p_time bigint,"
    "  OUT o_found boolean, OUT o_deleted bigint) LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  UPDATE users u SET"
    "    tokens_nbf = CASE WHEN p_action = 2 THEN u.tokens_nbf"
    "      ELSE greatest(u.tokens_nbf, p_time) END,"
    "    disabled = CASE p_action WHEN 1 THEN true WHEN 2 THEN false ELSE u.disabled END"
    "   WHERE u.id = p_user;\n"
    "  o_found := FOUND;\n"
    "  o_deleted := 0;\n"
    "  IF o_found AND p_action <> 2 THEN\n"
    "    DELETE FROM tokens t WHERE t.user_id = p_user;\n"
    "    GET DIAGNOSTICS o_deleted = ROW_COUNT;\n"
    "  END IF;\n"
    "END $$;"
    /* STORE_TOKEN_PURGE: the oldest expiries first, at most p_limit rows
     * of each table; rows another node is purging are skipped, not
     * waited for. */
    "CREATE FUNCTION chatd_token_purge(p_time bigint, p_limit int, OUT o_tokens bigint,"
    "  OUT o_jwts bigint) LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  DELETE FROM tokens WHERE hash IN (SELECT t.hash FROM tokens t"
    "    WHERE t.expires_at <= p_time ORDER BY t.expires_at LIMIT p_limit"
    "    FOR UPDATE SKIP LOCKED);\n"
    "  GET DIAGNOSTICS o_tokens = ROW_COUNT;\n"
    "  DELETE FROM revoked_jwts WHERE hash IN (SELECT r.hash FROM revoked_jwts r"
    "    WHERE r.expires_at <= p_time ORDER BY r.expires_at LIMIT p_limit"
    "    FOR UPDATE SKIP LOCKED);\n"
    "  GET DIAGNOSTICS o_jwts = ROW_COUNT;\n"
    "END $$;",
    /* 4: presence (as SQLite's migration 6). last_seen (ms, 0 = never),
     * written when the user goes offline; hide_last_seen: others get null.
     * A user's peers are a seek on conversations' primary key. */
    ("ALTER TABLE users ADD COLUMN last_seen bigint NOT NULL DEFAULT 0,"
     "  ADD COLUMN hide_last_seen boolean NOT NULL DEFAULT false;"),
    /* 5: groups (store.h "Groups"). A group's
     * messages are rows of messages with conv_lo = 0, conv_hi = its id,
     * numbered by its threads row (0, id). Every write of a group (sends
     * included) first takes the group's row lock (FOR UPDATE), and only
     * then anything else of the group (its threads row, member rows), so
     * the writers of one group are ordered by that lock, also across
     * nodes, and always lock in the same order. A member row holds the
     * member's seq range [joined_seq, left_seq (0: open)], read_seq and
     * muted; ord orders the members one system message made (join order
     * is (joined_seq, ord)). The unread count is computed
     * (chatd_group_unread), never counted per message. Idempotent (IF NOT
     * EXISTS, OR REPLACE), as a test that re-runs migrations needs. */
    "CREATE TABLE IF NOT EXISTS groups("
    "  id bigserial PRIMARY KEY,"
    "  name text NOT NULL,"
    "  avatar text NOT NULL DEFAULT '',"
    "  owner_id bigint NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  dissolved boolean NOT NULL DEFAULT false,"
    "  last_message_id bigint NOT NULL DEFAULT 0,"
    "  member_count int NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS group_members("
    "  group_id bigint NOT NULL,"
    "  user_id bigint NOT NULL,"
    "  role smallint NOT NULL DEFAULT 0,"
    "  joined_seq bigint NOT NULL,"
    "  left_seq bigint NOT NULL DEFAULT 0,"
    "  read_seq bigint NOT NULL DEFAULT 0,"
    "  muted boolean NOT NULL DEFAULT false,"
    "  ord int NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(group_id, user_id));"
    "CREATE INDEX IF NOT EXISTS group_members_user ON group_members(user_id, group_id);"
    "CREATE OR REPLACE FUNCTION chatd_role_name(r smallint) RETURNS text LANGUAGE sql IMMUTABLE AS"
    "  $$SELECT CASE r WHEN 2 THEN 'owner' WHEN 1 THEN 'admin' ELSE 'member' END$$;"
    /* The newest seq a member may see, and its unread count. */
    "CREATE OR REPLACE FUNCTION chatd_group_top(p_last bigint, p_left bigint) RETURNS bigint "
    "LANGUAGE sql"
    "  IMMUTABLE AS $$SELECT CASE WHEN p_left > 0 THEN least(p_left, p_last) ELSE p_last END$$;"
    "CREATE OR REPLACE FUNCTION chatd_group_unread(p_last bigint, p_left bigint, p_read bigint,"
    "  p_joined bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS"
    "  $$SELECT greatest(0, chatd_group_top(p_last, p_left) - greatest(p_read, p_joined - 1))$$;"
    /* The user's unread total: 1:1 conversations and the groups not muted. */
    "CREATE OR REPLACE FUNCTION chatd_unread_total(p_user bigint) RETURNS bigint LANGUAGE sql "
    "STABLE AS $$"
    "  SELECT (coalesce((SELECT sum(c.unread) FROM conversations c WHERE c.user_id = p_user), 0)"
    "    + coalesce((SELECT sum(chatd_group_unread(t.last_seq, m.left_seq, m.read_seq,"
    "      m.joined_seq)) FROM group_members m JOIN threads t ON t.conv_lo = 0"
    "      AND t.conv_hi = m.group_id WHERE m.user_id = p_user AND NOT m.muted), 0))::bigint"
    "$$;"
    "CREATE OR REPLACE FUNCTION chatd_read(p_user bigint, p_peer bigint, OUT o_status int,"
    "  OUT o_total bigint, OUT o_last_read bigint, OUT o_changed boolean)"
    "  LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  li bigint; un bigint; lr bigint;\n"
    "BEGIN\n"
    "  IF NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p_peer) THEN\n"
    "    o_status := 1;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  o_status := 0;\n"
    "  SELECT c.last_in_id, c.unread, c.last_read_id INTO li, un, lr FROM conversations c\n"
    "    WHERE c.user_id = p_user AND c.peer_id = p_peer FOR UPDATE;\n"
    "  o_changed := FOUND AND (un <> 0 OR lr <> li);\n"
    "  o_last_read := coalesce(li, 0);\n"
    "  IF o_changed THEN\n"
    "    UPDATE conversations c SET unread = 0, last_read_id = li\n"
    "      WHERE c.user_id = p_user AND c.peer_id = p_peer;\n"
    "  END IF;\n"
    "  o_total := chatd_unread_total(p_user);\n"
    "END $$;"
    "CREATE OR REPLACE FUNCTION chatd_group_err(p_code text, p_msg text) RETURNS json LANGUAGE sql"
    "  IMMUTABLE AS $$SELECT json_build_object('code', p_code, 'message', p_msg)$$;"
    /* The group object of store.h. */
    "CREATE OR REPLACE FUNCTION chatd_group_json(p_gid bigint) RETURNS json LANGUAGE sql STABLE AS "
    "$$"
    "  SELECT json_build_object('group_id', g.id, 'name', g.name, 'avatar', g.avatar,"
    "    'owner_id', g.owner_id, 'created_at', g.created_at, 'member_count', g.member_count,"
    "    'dissolved', g.dissolved, 'last_seq', t.last_seq)"
    "  FROM groups g JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = g.id WHERE g.id = p_gid$$;"
    /* The current members' ids by id, then p_extra (one who just left
     * or was removed) when > 0, as SQLite answers. */
    "CREATE OR REPLACE FUNCTION chatd_group_member_ids(p_gid bigint, p_extra bigint) RETURNS json"
    "  LANGUAGE sql STABLE AS $$"
    "  SELECT coalesce(json_agg(x.id ORDER BY x.k, x.id), '[]'::json) FROM ("
    "    SELECT m.user_id AS id, 0 AS k FROM group_members m WHERE m.group_id = p_gid"
    "      AND m.left_seq = 0 UNION ALL SELECT p_extra, 1 WHERE p_extra > 0) x"
    "$$;"
    /* A stored message (store.h): a group's with group_id, a 1:1 one with
     * to_id (a group send's client_msg_id may name either). */
    "CREATE OR REPLACE FUNCTION chatd_msg_json(p_id bigint) RETURNS json LANGUAGE sql STABLE AS $$"
    "  SELECT CASE WHEN m.conv_lo = 0 THEN json_build_object('id', m.id, 'seq', m.seq,"
    "    'group_id', m.conv_hi, 'from_id', m.from_id, 'from_username', u.username,"
    "    'from_userpic', u.userpic, 'type', m.type, 'data', m.data, 'time', m.time,"
    "    'client_msg_id', m.client_msg_id)"
    "  ELSE json_build_object('id', m.id, 'seq', m.seq, 'to_id', m.to_id, 'from_id', m.from_id,"
    "    'from_username', u.username, 'from_userpic', u.userpic, 'type', m.type, 'data', m.data,"
    "    'time', m.time, 'client_msg_id', m.client_msg_id) END"
    "  FROM messages m JOIN users u ON u.id = m.from_id WHERE m.id = p_id$$;"
    /* A JSON string as jansson writes it: to_json's, but a control
     * character without a short escape is \u00XX in upper case. */
    "CREATE OR REPLACE FUNCTION chatd_json_str(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE"
    "  AS $$\n"
    "DECLARE\n"
    "  r text := ''; c text; n int;\n"
    "BEGIN\n"
    "  IF t IS NULL OR t !~ '[\\x01-\\x1f]' THEN\n"
    "    RETURN to_json(t)::text;\n"
    "  END IF;\n"
    "  FOR i IN 1..length(t) LOOP\n"
    "    c := substr(t, i, 1);\n"
    "    n := ascii(c);\n"
    "    IF n < 32 AND n NOT IN (8, 9, 10, 12, 13) THEN\n"
    "      r := r || '\\u' || upper(lpad(to_hex(n), 4, '0'));\n"
    "    ELSE\n"
    "      r := r || substr(to_json(c)::text, 2, length(to_json(c)::text) - 2);\n"
    "    END IF;\n"
    "  END LOOP;\n"
    "  RETURN '\"' || r || '\"';\n"
    "END $$;"
    /* A system message's data, compact JSON in store.h's key order (the
     * bytes jansson's JSON_COMPACT gives SQLite's). */
    "CREATE OR REPLACE FUNCTION chatd_group_sysdata(p_event text, p_actor bigint, p_users bigint[],"
    "  p_name text, p_avatar text, p_role text, p_owner bigint) RETURNS text LANGUAGE sql STABLE"
    "  AS $$"
    "  SELECT '{\"event\":' || chatd_json_str(p_event) || ',\"actor\":' || p_actor"
    "    || ',\"users\":[' || coalesce((SELECT string_agg('{\"userid\":' || u.id"
    "      || ',\"username\":' || chatd_json_str(u.username) || '}', ',' ORDER BY x.o)"
    "      FROM unnest(p_users) WITH ORDINALITY AS x(id, o) JOIN users u ON u.id = x.id), '')"
    "    || ']' || coalesce(',\"name\":' || chatd_json_str(p_name), '')"
    "    || coalesce(',\"avatar\":' || chatd_json_str(p_avatar), '')"
    "    || coalesce(',\"role\":' || chatd_json_str(p_role), '')"
    "    || coalesce(',\"owner\":' || p_owner, '') || '}'"
    "$$;"
    /* Ids without repeats (first place kept) and without p_skip. */
    "CREATE OR REPLACE FUNCTION chatd_ids_dedup(p_ids bigint[], p_skip bigint) RETURNS bigint[]"
    "  LANGUAGE sql IMMUTABLE AS $$"
    "  SELECT coalesce(array_agg(y.id ORDER BY y.o), '{}'::bigint[]) FROM (SELECT x.id,"
    "    min(x.o) AS o FROM unnest(p_ids) WITH ORDINALITY AS x(id, o)"
    "    WHERE x.id IS DISTINCT FROM p_skip GROUP BY x.id) y"
    "$$;"
    /* Stores a message of a locked group (seq last_seq + 1) and moves the
     * sender's read position to it. o_id NULL: p_cmid was taken (by a
     * send that committed meanwhile): nothing written, no seq used. */
    "CREATE OR REPLACE FUNCTION chatd_group_post(p_gid bigint, p_from bigint, p_type text, p_data "
    "text,"
    "  p_time bigint, p_cmid text, OUT o_id bigint, OUT o_seq bigint) LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  SELECT t.last_seq + 1 INTO o_seq FROM threads t WHERE t.conv_lo = 0"
    "    AND t.conv_hi = p_gid;\n"
    "  INSERT INTO messages(id, seq, from_id, to_id, conv_lo, conv_hi, type, data, time,"
    "    client_msg_id) VALUES (nextval('messages_id_seq'), o_seq, p_from, 0, 0, p_gid, p_type,"
    "    p_data, p_time, p_cmid)\n"
    "    ON CONFLICT (from_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING\n"
    "    RETURNING id INTO o_id;\n"
    "  IF o_id IS NULL THEN\n"
    "    o_seq := NULL;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  UPDATE threads t SET last_seq = o_seq WHERE t.conv_lo = 0 AND t.conv_hi = p_gid;\n"
    "  UPDATE groups g SET last_message_id = o_id WHERE g.id = p_gid;\n"
    "  UPDATE group_members m SET read_seq = greatest(m.read_seq, o_seq)"
    "    WHERE m.group_id = p_gid AND m.user_id = p_from;\n"
    "END $$;"
    /* The start of a change of a group by p_user: locks the group's row;
     * o_status (enum store_status) 1 no such group, 3 not a member (now),
     * 2 dissolved; else 0 and the user's role. */
    "CREATE OR REPLACE FUNCTION chatd_group_lock(p_gid bigint, p_user bigint, OUT o_status int,"
    "  OUT o_result json, OUT o_role smallint) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  v_dissolved boolean; v_left bigint;\n"
    "BEGIN\n"
    "  SELECT g.dissolved INTO v_dissolved FROM groups g WHERE g.id = p_gid FOR UPDATE;\n"
    "  IF NOT FOUND THEN\n"
    "    o_status := 1;\n"
    "    o_result := chatd_group_err('not_found', 'No such group.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT m.role, m.left_seq INTO o_role, v_left FROM group_members m"
    "    WHERE m.group_id = p_gid AND m.user_id = p_user;\n"
    "  IF NOT FOUND OR v_left <> 0 THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('not_member', 'You are not a member of this group.');\n"
    "  ELSIF v_dissolved THEN\n"
    "    o_status := 2;\n"
    "    o_result := chatd_group_err('group_dissolved', 'The group was dissolved.');\n"
    "  ELSE\n"
    "    o_status := 0;\n"
    "  END IF;\n"
    "END $$;"
    /* STORE_GROUP_CREATE. */
    "CREATE OR REPLACE FUNCTION chatd_group_create(p_owner bigint, p_name text, p_avatar text,"
    "  p_members bigint[], p_max bigint, p_time bigint, OUT o_status int, OUT o_result json)"
    "  LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  v_ids bigint[] := chatd_ids_dedup(p_members, p_owner); v_gid bigint; p record;\n"
    "BEGIN\n"
    "  IF p_max > 0 AND cardinality(v_ids) + 1 > p_max THEN\n"
    "    o_status := 2;\n"
    "    o_result := chatd_group_err('group_full', 'The group would have too many members.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p_owner) THEN\n"
    "    o_status := 1;\n"
    "    o_result := chatd_group_err('not_found', 'No such user.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF (SELECT count(*) FROM users u WHERE u.id = ANY(v_ids) AND NOT u.disabled)"
    "      <> cardinality(v_ids) THEN\n"
    "    o_status := 1;\n"
    "    o_result := chatd_group_err('not_found', 'A member is not a user.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  INSERT INTO groups(name, avatar, owner_id, created_at, member_count)"
    "    VALUES (p_name, coalesce(p_avatar, ''), p_owner, p_time, cardinality(v_ids) + 1)"
    "    RETURNING id INTO v_gid;\n"
    "  INSERT INTO threads(conv_lo, conv_hi, last_seq) VALUES (0, v_gid, 0);\n"
    "  INSERT INTO group_members(group_id, user_id, role, joined_seq, ord)"
    "    SELECT v_gid, p_owner, 2, 1, 0 UNION ALL"
    "    SELECT v_gid, x.id, 0, 1, x.o FROM unnest(v_ids) WITH ORDINALITY AS x(id, o);\n"
    "  SELECT * INTO p FROM chatd_group_post(v_gid, p_owner, 'system',"
    "    chatd_group_sysdata('create', p_owner, v_ids, p_name, coalesce(p_avatar, ''),"
    "    NULL, NULL), p_time,"
    "    NULL);\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group', chatd_group_json(v_gid), 'members',"
    "    chatd_group_member_ids(v_gid, 0), 'message', chatd_msg_json(p.o_id));\n"
    "END $$;"
    /* STORE_GROUP_ADD. */
    "CREATE OR REPLACE FUNCTION chatd_group_add(p_actor bigint, p_gid bigint, p_members bigint[],"
    "  p_max bigint, p_time bigint, OUT o_status int, OUT o_result json)"
    "  LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  l record; p record; v_ids bigint[] := chatd_ids_dedup(p_members, NULL);"
    "  v_new bigint[];\n"
    "BEGIN\n"
    "  SELECT * INTO l FROM chatd_group_lock(p_gid, p_actor);\n"
    "  IF l.o_status <> 0 THEN\n"
    "    o_status := l.o_status;\n"
    "    o_result := l.o_result;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF l.o_role = 0 THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('forbidden', 'Only the owner and admins add members.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT coalesce(array_agg(x.id ORDER BY x.o), '{}'::bigint[]) INTO v_new"
    "    FROM unnest(v_ids) WITH ORDINALITY AS x(id, o) WHERE NOT EXISTS (SELECT 1"
    "    FROM group_members m WHERE m.group_id = p_gid AND m.user_id = x.id"
    "    AND m.left_seq = 0);\n"
    "  IF (SELECT count(*) FROM users u WHERE u.id = ANY(v_new) AND NOT u.disabled)"
    "      <> cardinality(v_new) THEN\n"
    "    o_status := 1;\n"
    "    o_result := chatd_group_err('not_found', 'A member is not a user.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  o_status := 0;\n"
    "  IF cardinality(v_new) = 0 THEN\n"
    "    o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "      chatd_group_member_ids(p_gid, 0), 'message', NULL, 'added', '[]'::json);\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF p_max > 0 AND (SELECT g.member_count FROM groups g WHERE g.id = p_gid)"
    "      + cardinality(v_new) > p_max THEN\n"
    "    o_status := 2;\n"
    "    o_result := chatd_group_err('group_full', 'The group would have too many members.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_actor, 'system',"
    "    chatd_group_sysdata('add', p_actor, v_new, NULL, NULL, NULL, NULL), p_time, NULL);\n"
    "  INSERT INTO group_members AS m (group_id, user_id, role, joined_seq, ord)"
    "    SELECT p_gid, x.id, 0, p.o_seq, x.o FROM unnest(v_new) WITH ORDINALITY AS x(id, o)\n"
    "    ON CONFLICT (group_id, user_id) DO UPDATE SET role = 0,"
    "      joined_seq = excluded.joined_seq, left_seq = 0, read_seq = 0, muted = false,"
    "      ord = excluded.ord;\n"
    "  UPDATE groups g SET member_count = g.member_count + cardinality(v_new)"
    "    WHERE g.id = p_gid;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, 0), 'message', chatd_msg_json(p.o_id), 'added',"
    "    to_json(v_new));\n"
    "END $$;"
    /* STORE_GROUP_REMOVE. */
    "CREATE OR REPLACE FUNCTION chatd_group_remove(p_actor bigint, p_gid bigint, p_peer bigint,"
    "  p_time bigint, OUT o_status int, OUT o_result json) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  l record; p record; v_role smallint;\n"
    "BEGIN\n"
    "  SELECT * INTO l FROM chatd_group_lock(p_gid, p_actor);\n"
    "  IF l.o_status <> 0 THEN\n"
    "    o_status := l.o_status;\n"
    "    o_result := l.o_result;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF l.o_role = 0 OR p_peer = p_actor THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('forbidden', CASE WHEN l.o_role = 0"
    "      THEN 'Only the owner and admins remove members.'"
    "      ELSE 'You cannot remove yourself; leave the group instead.' END);\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT m.role INTO v_role FROM group_members m WHERE m.group_id = p_gid"
    "    AND m.user_id = p_peer AND m.left_seq = 0;\n"
    "  IF NOT FOUND THEN\n"
    "    o_status := 2;\n"
    "    o_result := chatd_group_err('not_in_group', 'That user is not a member.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF l.o_role = 1 AND v_role <> 0 THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('forbidden', 'An admin removes members only.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_actor, 'system',"
    "    chatd_group_sysdata('remove', p_actor, ARRAY[p_peer], NULL, NULL, NULL, NULL), p_time,"
    "    NULL);\n"
    "  UPDATE group_members m SET left_seq = p.o_seq WHERE m.group_id = p_gid"
    "    AND m.user_id = p_peer;\n"
    "  UPDATE groups g SET member_count = g.member_count - 1 WHERE g.id = p_gid;\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, p_peer), 'message', chatd_msg_json(p.o_id));\n"
    "END $$;"
    /* STORE_GROUP_LEAVE: the owner's successor is the earliest-joined
     * admin, else the earliest-joined member; the last member ends the
     * group. */
    "CREATE OR REPLACE FUNCTION chatd_group_leave(p_user bigint, p_gid bigint, p_time bigint,"
    "  OUT o_status int, OUT o_result json) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  l record; p record; v_owner bigint; v_last boolean;\n"
    "BEGIN\n"
    "  SELECT * INTO l FROM chatd_group_lock(p_gid, p_user);\n"
    "  IF l.o_status <> 0 THEN\n"
    "    o_status := l.o_status;\n"
    "    o_result := l.o_result;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  v_last := NOT EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = p_gid"
    "    AND m.left_seq = 0 AND m.user_id <> p_user);\n"
    "  IF l.o_role = 2 AND NOT v_last THEN\n"
    "    SELECT m.user_id INTO v_owner FROM group_members m WHERE m.group_id = p_gid"
    "      AND m.left_seq = 0 AND m.user_id <> p_user"
    "      ORDER BY m.role DESC, m.joined_seq, m.ord LIMIT 1;\n"
    "    UPDATE group_members m SET role = 2 WHERE m.group_id = p_gid AND m.user_id = v_owner;\n"
    "    UPDATE groups g SET owner_id = v_owner WHERE g.id = p_gid;\n"
    "  END IF;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_user, 'system',"
    "    chatd_group_sysdata('leave', p_user, ARRAY[p_user], NULL, NULL, NULL, v_owner), p_time,"
    "    NULL);\n"
    "  UPDATE group_members m SET left_seq = p.o_seq WHERE m.group_id = p_gid"
    "    AND m.user_id = p_user;\n"
    "  UPDATE groups g SET member_count = g.member_count - 1, dissolved = g.dissolved OR v_last"
    "    WHERE g.id = p_gid;\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, p_user), 'message', chatd_msg_json(p.o_id), 'dissolved',"
    "    v_last);\n"
    "END $$;"
    /* STORE_GROUP_UPDATE: p_name / p_avatar NULL = unchanged. */
    "CREATE OR REPLACE FUNCTION chatd_group_update(p_actor bigint, p_gid bigint, p_name text,"
    "  p_avatar text, p_time bigint, OUT o_status int, OUT o_result json)"
    "  LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  l record; p record; v_name text; v_avatar text;\n"
    "BEGIN\n"
    "  SELECT * INTO l FROM chatd_group_lock(p_gid, p_actor);\n"
    "  IF l.o_status <> 0 THEN\n"
    "    o_status := l.o_status;\n"
    "    o_result := l.o_result;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF l.o_role = 0 THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('forbidden',"
    "      'Only the owner and admins change the group.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT CASE WHEN p_name <> g.name THEN p_name END,"
    "    CASE WHEN p_avatar <> g.avatar THEN p_avatar END INTO v_name, v_avatar"
    "    FROM groups g WHERE g.id = p_gid;\n"
    "  o_status := 0;\n"
    "  IF v_name IS NULL AND v_avatar IS NULL THEN\n"
    "    o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "      chatd_group_member_ids(p_gid, 0), 'message', NULL);\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  UPDATE groups g SET name = coalesce(v_name, g.name), avatar = coalesce(v_avatar, g.avatar)"
    "    WHERE g.id = p_gid;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_actor, 'system',"
    "    chatd_group_sysdata('update', p_actor, '{}', v_name, v_avatar, NULL, NULL), p_time,"
    "    NULL);\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, 0), 'message', chatd_msg_json(p.o_id));\n"
    "END $$;"
    /* STORE_GROUP_ROLE: p_role enum store_group_role. */
    "CREATE OR REPLACE FUNCTION chatd_group_role(p_actor bigint, p_gid bigint, p_peer bigint,"
    "  p_role int, p_time bigint, OUT o_status int, OUT o_result json)"
    "  LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  l record; p record;\n"
    "BEGIN\n"
    "  SELECT * INTO l FROM chatd_group_lock(p_gid, p_actor);\n"
    "  IF l.o_status <> 0 THEN\n"
    "    o_status := l.o_status;\n"
    "    o_result := l.o_result;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF l.o_role <> 2 OR p_peer = p_actor THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('forbidden', CASE WHEN l.o_role <> 2"
    "      THEN 'Only the owner changes roles.'"
    "      ELSE 'The owner cannot change its own role.' END);\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF NOT EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = p_gid"
    "      AND m.user_id = p_peer AND m.left_seq = 0) THEN\n"
    "    o_status := 2;\n"
    "    o_result := chatd_group_err('not_in_group', 'That user is not a member.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  UPDATE group_members m SET role = p_role WHERE m.group_id = p_gid AND m.user_id = p_peer;\n"
    "  IF p_role = 2 THEN\n"
    "    UPDATE group_members m SET role = 1 WHERE m.group_id = p_gid AND m.user_id = p_actor;\n"
    "    UPDATE groups g SET owner_id = p_peer WHERE g.id = p_gid;\n"
    "  END IF;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_actor, 'system',"
    "    chatd_group_sysdata('role', p_actor, ARRAY[p_peer], NULL, NULL,"
    "    chatd_role_name(p_role::smallint), NULL), p_time, NULL);\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, 0), 'message', chatd_msg_json(p.o_id));\n"
    "END $$;"
    /* STORE_GROUP_DISSOLVE. */
    "CREATE OR REPLACE FUNCTION chatd_group_dissolve(p_actor bigint, p_gid bigint, p_time bigint,"
    "  OUT o_status int, OUT o_result json) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  l record; p record;\n"
    "BEGIN\n"
    "  SELECT * INTO l FROM chatd_group_lock(p_gid, p_actor);\n"
    "  IF l.o_status <> 0 THEN\n"
    "    o_status := l.o_status;\n"
    "    o_result := l.o_result;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  IF l.o_role <> 2 THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('forbidden', 'Only the owner dissolves the group.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_actor, 'system',"
    "    chatd_group_sysdata('dissolve', p_actor, '{}', NULL, NULL, NULL, NULL), p_time, NULL);\n"
    "  UPDATE groups g SET dissolved = true WHERE g.id = p_gid;\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, 0), 'message', chatd_msg_json(p.o_id));\n"
    "END $$;"
    /* STORE_GROUP_MUTE: a member, also one that left (its count stays on
     * its chat list item). */
    "CREATE OR REPLACE FUNCTION chatd_group_mute(p_user bigint, p_gid bigint, p_muted boolean,"
    "  OUT o_status int, OUT o_result json) LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  IF NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = p_gid) THEN\n"
    "    o_status := 1;\n"
    "    o_result := chatd_group_err('not_found', 'No such group.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  UPDATE group_members m SET muted = p_muted WHERE m.group_id = p_gid"
    "    AND m.user_id = p_user;\n"
    "  IF NOT FOUND THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('not_member', 'You are not a member of this group.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group_id', p_gid, 'muted', p_muted, 'total',"
    "    chatd_unread_total(p_user));\n"
    "END $$;"
    /* STORE_GROUP_SEND, a pass's run of consecutive group sends at once
     * (as chatd_send_batch for 1:1): one row per send, in order. Each
     * statement that touches a row once per send would make a pass of N
     * sends to one group cost N^2 (every update of a row adds a version the
     * next one must walk past, until the commit), so the groups' rows are
     * locked once (in id order: two nodes' batches cannot deadlock on
     * them), and threads, groups and member rows are updated once per group
     * (per sender) for the whole run. o_status: enum store_status (1 no
     * such group, 3 not a member now, 2 dissolved), o_msg the error or a
     * duplicate's stored message (o_dup); a new message's row carries id,
     * seq and the sender's name and picture (the caller has the rest).
     * o_members (the group's member ids) comes once per group, on its
     * first accepted send. A unique violation (the same client_msg_id
     * stored at once by another node) re-runs the block, as in
     * chatd_send_batch: the send becomes a duplicate. */
    "CREATE OR REPLACE FUNCTION chatd_group_send_batch(p_from bigint[], p_gid bigint[],"
    "  p_type text[], p_data text[], p_cmid text[], p_time bigint[]) RETURNS TABLE(o_ord bigint,"
    "  o_status int, o_id bigint, o_seq bigint, o_from_username text, o_from_userpic text,"
    "  o_dup boolean, o_msg json, o_members json) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  v_id bigint[]; v_seq bigint[];\n"
    "BEGIN\n"
    "  PERFORM 1 FROM groups g WHERE g.id = ANY(p_gid) ORDER BY g.id FOR UPDATE;\n"
    "  FOR attempt IN 1..3 LOOP\n"
    "  BEGIN\n"
    "  WITH b AS (\n"
    "    SELECT x.ord, x.f, x.g, x.ty, x.da, x.cm, x.ti, gr.id IS NOT NULL AS gok,\n"
    "           coalesce(gm.left_seq = 0, false) AS mok, coalesce(gr.dissolved, false) AS diss\n"
    "      FROM unnest(p_from, p_gid, p_type, p_data, p_cmid, p_time) WITH ORDINALITY\n"
    "           AS x(f, g, ty, da, cm, ti, ord)\n"
    "      LEFT JOIN groups gr ON gr.id = x.g\n"
    "      LEFT JOIN group_members gm ON gm.group_id = x.g AND gm.user_id = x.f),\n"
    "  c AS (\n"
    "    SELECT b.*, b.gok AND b.mok AND NOT b.diss AS ok FROM b),\n"
    "  d AS (\n"
    "    SELECT c.*, (c.ok AND m.id IS NULL AND (c.cm IS NULL OR\n"
    "             row_number() OVER (PARTITION BY c.f, c.cm, c.ok ORDER BY c.ord) = 1)) AS fresh\n"
    "      FROM c LEFT JOIN messages m ON c.ok AND c.cm IS NOT NULL\n"
    "           AND m.from_id = c.f AND m.client_msg_id = c.cm),\n"
    "  n AS (\n"
    "    SELECT d.*, CASE WHEN d.fresh THEN t.last_seq + row_number() OVER\n"
    "             (PARTITION BY d.fresh, d.g ORDER BY d.ord) END AS seq\n"
    "      FROM d LEFT JOIN threads t ON d.fresh AND t.conv_lo = 0 AND t.conv_hi = d.g),\n"
    "  ids AS (\n"
    "    SELECT s.*, CASE WHEN s.fresh THEN nextval('messages_id_seq') END AS id\n"
    "      FROM (SELECT * FROM n ORDER BY ord) s),\n"
    "  ins AS (\n"
    "    INSERT INTO messages(id, seq, from_id, to_id, conv_lo, conv_hi, type, data, time,\n"
    "      client_msg_id) SELECT id, seq, f, 0, 0, g, ty, da, ti, cm FROM ids WHERE fresh),\n"
    "  thr AS (\n"
    "    UPDATE threads t SET last_seq = t.last_seq + c.n\n"
    "      FROM (SELECT g, count(*) AS n FROM ids WHERE fresh GROUP BY 1) c\n"
    "     WHERE t.conv_lo = 0 AND t.conv_hi = c.g),\n"
    "  grp AS (\n"
    "    UPDATE groups gr SET last_message_id = c.mx\n"
    "      FROM (SELECT g, max(id) AS mx FROM ids WHERE fresh GROUP BY 1) c WHERE gr.id = c.g),\n"
    "  mem AS (\n"
    "    UPDATE group_members gm SET read_seq = greatest(gm.read_seq, c.mx)\n"
    "      FROM (SELECT g, f, max(seq) AS mx FROM ids WHERE fresh GROUP BY 1, 2) c\n"
    "     WHERE gm.group_id = c.g AND gm.user_id = c.f)\n"
    "  SELECT array_agg(CASE WHEN i.fresh THEN i.id WHEN i.ok THEN 0 WHEN NOT i.gok THEN -1\n"
    "           WHEN NOT i.mok THEN -3 ELSE -2 END ORDER BY i.ord),\n"
    "         array_agg(coalesce(i.seq, 0) ORDER BY i.ord)\n"
    "    INTO v_id, v_seq FROM ids i;\n"
    "  EXIT;\n"
    "  EXCEPTION WHEN unique_violation THEN\n"
    "    IF attempt = 3 THEN\n"
    "      RAISE;\n"
    "    END IF;\n"
    "  END;\n"
    "  END LOOP;\n"
    "  RETURN QUERY\n"
    "  SELECT x.ord, CASE WHEN v_id[x.ord::int] >= 0 THEN 0 ELSE -v_id[x.ord::int]::int END,\n"
    "         CASE WHEN v_id[x.ord::int] > 0 THEN v_id[x.ord::int] END,\n"
    "         CASE WHEN v_id[x.ord::int] > 0 THEN v_seq[x.ord::int] END,\n"
    "         fu.username, fu.userpic, v_id[x.ord::int] = 0,\n"
    "         CASE v_id[x.ord::int]\n"
    "           WHEN -1 THEN chatd_group_err('not_found', 'No such group.')\n"
    "           WHEN -3 THEN chatd_group_err('not_member', 'You are not a member of this group.')\n"
    "           WHEN -2 THEN chatd_group_err('group_dissolved', 'The group was dissolved.')\n"
    "           WHEN 0 THEN (SELECT chatd_msg_json(m.id) FROM messages m\n"
    "             WHERE m.from_id = x.f AND m.client_msg_id = x.cm) END,\n"
    "         CASE WHEN v_id[x.ord::int] >= 0 AND row_number() OVER (PARTITION BY x.g,\n"
    "           v_id[x.ord::int] >= 0 ORDER BY x.ord) = 1 THEN chatd_group_member_ids(x.g, 0) END\n"
    "    FROM unnest(p_from, p_gid, p_cmid) WITH ORDINALITY AS x(f, g, cm, ord)\n"
    "    LEFT JOIN users fu ON fu.id = x.f\n"
    "   ORDER BY x.ord;\n"
    "END $$;"
    /* One group send, for psql and tests: the batch of one. */
    "CREATE OR REPLACE FUNCTION chatd_group_send(p_user bigint, p_gid bigint, p_type text,"
    "  p_data text, p_cmid text, p_time bigint) RETURNS TABLE(o_ord bigint, o_status int,"
    "  o_id bigint, o_seq bigint, o_from_username text, o_from_userpic text, o_dup boolean,"
    "  o_msg json, o_members json) LANGUAGE sql AS"
    "  $$SELECT * FROM chatd_group_send_batch(ARRAY[p_user], ARRAY[p_gid], ARRAY[p_type],"
    "  ARRAY[p_data], ARRAY[p_cmid], ARRAY[p_time])$$;"
    /* STORE_GROUP_READ: a member, also one that left (up to its left_seq). */
    "CREATE OR REPLACE FUNCTION chatd_group_read(p_user bigint, p_gid bigint, OUT o_status int,"
    "  OUT o_result json) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  v record; v_top bigint; v_changed boolean;\n"
    "BEGIN\n"
    "  SELECT m.read_seq, m.joined_seq, m.left_seq, t.last_seq INTO v FROM group_members m"
    "    JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = m.group_id"
    "    WHERE m.group_id = p_gid AND m.user_id = p_user FOR UPDATE OF m;\n"
    "  IF NOT FOUND THEN\n"
    "    IF EXISTS (SELECT 1 FROM groups g WHERE g.id = p_gid) THEN\n"
    "      o_status := 3;\n"
    "      o_result := chatd_group_err('not_member', 'You are not a member of this group.');\n"
    "    ELSE\n"
    "      o_status := 1;\n"
    "      o_result := chatd_group_err('not_found', 'No such group.');\n"
    "    END IF;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  v_top := chatd_group_top(v.last_seq, v.left_seq);\n"
    "  v_changed := chatd_group_unread(v.last_seq, v.left_seq, v.read_seq, v.joined_seq) > 0;\n"
    "  IF v_changed THEN\n"
    "    UPDATE group_members m SET read_seq = v_top WHERE m.group_id = p_gid"
    "      AND m.user_id = p_user;\n"
    "  END IF;\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('total', chatd_unread_total(p_user), 'changed', v_changed,"
    "    'last_read_seq', greatest(v_top, v.read_seq));\n"
    "END $$;"
    /* STORE_GROUP_INFO (a read). */
    "CREATE OR REPLACE FUNCTION chatd_group_info(p_user bigint, p_gid bigint, OUT o_status int,"
    "  OUT o_result json) LANGUAGE plpgsql STABLE AS $$\n"
    "DECLARE\n"
    "  v group_members;\n"
    "BEGIN\n"
    "  IF NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = p_gid) THEN\n"
    "    o_status := 1;\n"
    "    o_result := chatd_group_err('not_found', 'No such group.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  SELECT * INTO v FROM group_members m WHERE m.group_id = p_gid AND m.user_id = p_user;\n"
    "  IF NOT FOUND THEN\n"
    "    o_status := 3;\n"
    "    o_result := chatd_group_err('not_member', 'You are not a member of this group.');\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  o_status := 0;\n"
    "  SELECT json_build_object('group_id', g.id, 'name', g.name, 'avatar', g.avatar,"
    "    'owner_id', g.owner_id, 'created_at', g.created_at, 'member_count', g.member_count,"
    "    'dissolved', g.dissolved, 'last_seq', t.last_seq, 'role', chatd_role_name(v.role),"
    "    'muted', v.muted, 'joined_seq', v.joined_seq, 'left', v.left_seq <> 0, 'members',"
    "    CASE WHEN v.left_seq <> 0 THEN '[]'::json ELSE (SELECT coalesce(json_agg("
    "      json_build_object('userid', u.id, 'username', u.username, 'userpic', u.userpic,"
    "      'last_seen', CASE WHEN u.last_seen > 0 AND NOT u.hide_last_seen THEN u.last_seen"
    "      END, 'role', chatd_role_name(x.role)) ORDER BY x.joined_seq, x.ord),"
    "      '[]'::json) FROM group_members x JOIN users u ON u.id = x.user_id"
    "      WHERE x.group_id = g.id AND x.left_seq = 0) END) INTO o_result"
    "    FROM groups g JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = g.id WHERE g.id = p_gid;\n"
    "END $$;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* The message columns, in msg_json's order, and the conversation's
 * conv_hi last (a group message, to_id 0, shows it as group_id). */
#define MSG_COLS                                                                                   \
    "m.id, m.seq, m.to_id, m.from_id, u.username, u.userpic, m.type, m.data, m.time,"              \
    " m.client_msg_id, m.conv_hi"

enum stmt_id {
    ST_USER_INSERT,
    ST_USER_BY_NAME,
    ST_USER_BY_ID,
    ST_USER_EXTERNAL,
    ST_USER_SEARCH,
    ST_TOKEN_CREATE,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_DELETE,
    ST_JWT_REVOKE,
    ST_SEND,
    ST_CHAT_LIST,
    ST_HISTORY,
    ST_SYNC,
    ST_SYNC_CURSORS,
    ST_READ,
    ST_UNREAD,
    ST_ADMIN,
    ST_PURGE,
    ST_LAST_SEEN,
    ST_SETTINGS,
    ST_PEERS,
    ST_GROUP_CREATE,
    ST_GROUP_INFO,
    ST_GROUP_ADD,
    ST_GROUP_REMOVE,
    ST_GROUP_LEAVE,
    ST_GROUP_UPDATE,
    ST_GROUP_ROLE,
    ST_GROUP_DISSOLVE,
    ST_GROUP_MUTE,
    ST_GROUP_SEND,
    ST_GROUP_HISTORY,
    ST_GROUP_READ,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    /* A taken key or external id: no row, CONFLICT (without aborting the
     * pass, as a unique violation would). */
    [ST_USER_INSERT] =
        "INSERT INTO users(username, password_hash, userpic, external_id, created_at, name_key)"
        " VALUES($1, $2, $3, NULL, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
    [ST_USER_BY_NAME] =
        "SELECT id, username, userpic, password_hash, disabled FROM users WHERE name_key = $1",
    [ST_USER_BY_ID] = "SELECT id, username, userpic FROM users WHERE id = $1",
    [ST_USER_EXTERNAL] = "SELECT o_status, o_id, o_name FROM chatd_user_external($1, $2::text[],"
                         " $3::text[], $4, $5, $6, $7)",
    /* as store_sqlite.c: a prefix of the username key as a range on the
     * key's index in byte order (users_name_key_c), in key order */
    [ST_USER_SEARCH] = "SELECT id, username, userpic, last_seen, hide_last_seen FROM users"
                       " WHERE name_key COLLATE \"C\" >= $2 AND name_key COLLATE \"C\" < $3"
                       " AND id <> $1 AND NOT disabled"
                       " ORDER BY name_key COLLATE \"C\" LIMIT $4",
    /* users found, tokens inserted: (0, _) NOT_FOUND, (1, 0) CONFLICT */
    /* FOR SHARE: see chatd_user_admin; a disabled user is "not found" */
    [ST_TOKEN_CREATE] = "WITH u AS (SELECT id FROM users WHERE id = $2 AND NOT disabled"
                        "  FOR SHARE),"
                        " ins AS (INSERT INTO tokens(hash, user_id, expires_at)"
                        "  SELECT $1, id, $3 FROM u ON CONFLICT DO NOTHING RETURNING 1)"
                        " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM ins)",
    [ST_TOKEN_LOOKUP] = "SELECT u.id, u.username, u.userpic, t.expires_at FROM tokens t"
                        " JOIN users u ON u.id = t.user_id"
                        " WHERE t.hash = $1 AND t.expires_at > $2 AND NOT u.disabled",
    [ST_TOKEN_DELETE] = "DELETE FROM tokens WHERE hash = $1 RETURNING 1",
    [ST_JWT_REVOKE] = "SELECT chatd_jwt_revoke($1, $2, $3)",
    [ST_SEND] = "SELECT * FROM chatd_send_batch($1::bigint[], $2::bigint[], $3::text[],"
                " $4::text[], $5::bigint[], $6::text[])",
    /* 1:1 conversations (kind 0), then the groups the user is or was a
     * member of (kind 1) with the newest message it may see; columns 12..
     * only for groups */
    [ST_CHAT_LIST] =
        "SELECT 0, c.peer_id, u.username, u.userpic, m.type, m.data, m.time, c.unread,"
        " c.last_message_id, m.seq, u.last_seen, u.hide_last_seen, NULL::bigint, NULL::text,"
        " NULL::boolean, NULL::smallint, NULL::int, NULL::boolean, NULL::boolean"
        " FROM conversations c"
        " JOIN users u ON u.id = c.peer_id"
        " JOIN messages m ON m.id = c.last_message_id"
        " WHERE c.user_id = $1"
        " UNION ALL"
        " SELECT 1, g.id, g.name, g.avatar, m.type, m.data, m.time,"
        " chatd_group_unread(t.last_seq, gm.left_seq, gm.read_seq, gm.joined_seq), m.id, m.seq,"
        " NULL, NULL, m.from_id, u.username, gm.muted, gm.role, g.member_count, g.dissolved,"
        " gm.left_seq <> 0"
        " FROM group_members gm"
        " JOIN groups g ON g.id = gm.group_id"
        " JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = gm.group_id"
        " JOIN messages m ON m.conv_lo = 0 AND m.conv_hi = gm.group_id"
        "  AND m.seq = chatd_group_top(t.last_seq, gm.left_seq)"
        " JOIN users u ON u.id = m.from_id"
        " WHERE gm.user_id = $1 ORDER BY 9 DESC",
    /* By seq on the conversation index (seq order = id order within a
     * conversation); `before` becomes its seq when it is a message of this
     * conversation, so the scan starts there. */
    [ST_HISTORY] = "SELECT " MSG_COLS " FROM messages m JOIN users u ON u.id = m.from_id"
                   " WHERE m.conv_lo = $1 AND m.conv_hi = $2 AND m.id < $3"
                   " AND m.seq < coalesce((SELECT b.seq FROM messages b WHERE b.id = $3"
                   "  AND b.conv_lo = $1 AND b.conv_hi = $2), 9223372036854775807)"
                   " ORDER BY m.seq DESC LIMIT $4",
    /* The old id cursor: per conversation, the messages past the last one
     * with id <= after, cut to the limit, then merged by id. */
    [ST_SYNC] = "SELECT " MSG_COLS " FROM conversations c"
                " CROSS JOIN LATERAL (SELECT m2.* FROM messages m2"
                "  WHERE m2.conv_lo = least(c.user_id, c.peer_id)"
                "  AND m2.conv_hi = greatest(c.user_id, c.peer_id) AND m2.id > $2"
                "  AND m2.seq > coalesce((SELECT m3.seq FROM messages m3"
                "   WHERE m3.conv_lo = least(c.user_id, c.peer_id)"
                "   AND m3.conv_hi = greatest(c.user_id, c.peer_id) AND m3.id <= $2"
                "   ORDER BY m3.seq DESC LIMIT 1), 0)"
                "  ORDER BY m2.seq LIMIT $3) m"
                " JOIN users u ON u.id = m.from_id"
                " WHERE c.user_id = $1 AND c.last_message_id > $2"
                " ORDER BY m.id LIMIT $3",
    /* $2/$3: the cursors as parallel arrays of peer ids and seqs. Every
     * conversation whose counter is past its cursor, most recent first,
     * with the messages past its cursor while the whole answer's limit $4
     * lasts. Seqs have no holes, so a conversation holds exactly
     * last_seq - cursor of them: the budget left for each is $4 minus what
     * the conversations before it take, known from the counters alone,
     * and the LATERAL reads only that many (none once it is used up). So
     * the rows fetched are the conversations plus at most $4 messages,
     * however many conversations there are. The counter tells whether
     * more are left; the C side still cuts to $4, defensively. */
    /* A group is -(its id) among the peers (cursors and answer), its
     * last_seq the newest seq the user may see and its cursor at least
     * joined_seq - 1. */
    [ST_SYNC_CURSORS] =
        "WITH cur AS (SELECT * FROM unnest($2::bigint[], $3::bigint[]) AS x(peer, seq)),"
        " conv0 AS (SELECT c.peer_id, c.last_message_id, t.last_seq,"
        "  coalesce(cur.seq, 0) AS cursor, t.conv_lo, t.conv_hi FROM conversations c"
        "  JOIN threads t ON t.conv_lo = least(c.user_id, c.peer_id)"
        "   AND t.conv_hi = greatest(c.user_id, c.peer_id)"
        "  LEFT JOIN cur ON cur.peer = c.peer_id"
        "  WHERE c.user_id = $1 AND t.last_seq > coalesce(cur.seq, 0)"
        "  UNION ALL"
        "  SELECT -gm.group_id, CASE WHEN gm.left_seq > 0 AND gm.left_seq < t.last_seq THEN"
        "   (SELECT x.id FROM messages x WHERE x.conv_lo = 0 AND x.conv_hi = gm.group_id"
        "    AND x.seq = gm.left_seq) ELSE g.last_message_id END,"
        "   chatd_group_top(t.last_seq, gm.left_seq),"
        "   greatest(coalesce(cur.seq, 0), gm.joined_seq - 1), 0, gm.group_id"
        "  FROM group_members gm JOIN groups g ON g.id = gm.group_id"
        "  JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = gm.group_id"
        "  LEFT JOIN cur ON cur.peer = -gm.group_id"
        "  WHERE gm.user_id = $1 AND chatd_group_top(t.last_seq, gm.left_seq)"
        "   > greatest(coalesce(cur.seq, 0), gm.joined_seq - 1)),"
        " conv AS (SELECT conv0.*, CASE WHEN $4::bigint IS NULL THEN NULL ELSE"
        "  greatest(0, $4::bigint - coalesce(sum(last_seq - cursor) OVER (ORDER BY"
        "   last_message_id DESC, peer_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),"
        "   0)) END AS budget FROM conv0)"
        " SELECT conv.peer_id, conv.last_seq, conv.cursor, " MSG_COLS " FROM conv"
        " LEFT JOIN LATERAL (SELECT m2.* FROM messages m2"
        "  WHERE conv.budget IS DISTINCT FROM 0 AND m2.conv_lo = conv.conv_lo"
        "  AND m2.conv_hi = conv.conv_hi AND m2.seq > conv.cursor AND m2.seq <= conv.last_seq"
        "  ORDER BY m2.seq LIMIT conv.budget) m ON true"
        " LEFT JOIN users u ON u.id = m.from_id"
        " ORDER BY conv.last_message_id DESC, conv.peer_id, m.seq",
    [ST_READ] = "SELECT o_status, o_total, o_last_read, o_changed FROM chatd_read($1, $2)",
    /* 1:1 conversations (kind 0), then groups (kind 1), each the most
     * recent first */
    [ST_UNREAD] =
        "SELECT 0, c.peer_id, c.unread, false, c.last_message_id FROM conversations c"
        " WHERE c.user_id = $1 AND c.unread > 0"
        " UNION ALL"
        " SELECT 1, b.group_id, b.n, b.muted, m.id FROM (SELECT gm.group_id, gm.muted,"
        "  chatd_group_unread(t.last_seq, gm.left_seq, gm.read_seq, gm.joined_seq) AS n,"
        "  chatd_group_top(t.last_seq, gm.left_seq) AS top"
        "  FROM group_members gm JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = gm.group_id"
        "  WHERE gm.user_id = $1) b"
        " JOIN messages m ON m.conv_lo = 0 AND m.conv_hi = b.group_id AND m.seq = b.top"
        " WHERE b.n > 0 ORDER BY 1, 5 DESC",
    [ST_ADMIN] = "SELECT o_found, o_deleted FROM chatd_user_admin($1, $2, $3)",
    [ST_PURGE] = "SELECT o_tokens, o_jwts FROM chatd_token_purge($1, $2)",
    /* last_seen never moves back (nodes may write it out of order) */
    [ST_LAST_SEEN] = "UPDATE users SET last_seen = greatest(last_seen, $2) WHERE id = $1"
                     " RETURNING 1",
    [ST_SETTINGS] = "UPDATE users SET hide_last_seen = $2 WHERE id = $1 RETURNING 1",
    /* the user's setting, then one row per peer (NULL when none): 1:1
     * peers and the current members of its groups that are not dissolved */
    [ST_PEERS] = "SELECT u.hide_last_seen, u.last_seen, p.peer FROM users u"
                 " LEFT JOIN LATERAL (SELECT c.peer_id AS peer FROM conversations c"
                 "  WHERE c.user_id = u.id"
                 "  UNION SELECT o.user_id FROM group_members gm"
                 "  JOIN groups g ON g.id = gm.group_id AND NOT g.dissolved"
                 "  JOIN group_members o ON o.group_id = gm.group_id AND o.left_seq = 0"
                 "   AND o.user_id <> u.id"
                 "  WHERE gm.user_id = u.id AND gm.left_seq = 0) p ON true"
                 " WHERE u.id = $1 ORDER BY p.peer",
    [ST_GROUP_CREATE] = "SELECT o_status, o_result FROM chatd_group_create($1, $2, $3,"
                        " $4::bigint[], $5, $6)",
    [ST_GROUP_INFO] = "SELECT o_status, o_result FROM chatd_group_info($1, $2)",
    [ST_GROUP_ADD] = "SELECT o_status, o_result FROM chatd_group_add($1, $2, $3::bigint[], $4, $5)",
    [ST_GROUP_REMOVE] = "SELECT o_status, o_result FROM chatd_group_remove($1, $2, $3, $4)",
    [ST_GROUP_LEAVE] = "SELECT o_status, o_result FROM chatd_group_leave($1, $2, $3)",
    [ST_GROUP_UPDATE] = "SELECT o_status, o_result FROM chatd_group_update($1, $2, $3, $4, $5)",
    [ST_GROUP_ROLE] = "SELECT o_status, o_result FROM chatd_group_role($1, $2, $3, $4, $5)",
    [ST_GROUP_DISSOLVE] = "SELECT o_status, o_result FROM chatd_group_dissolve($1, $2, $3)",
    [ST_GROUP_MUTE] = "SELECT o_status, o_result FROM chatd_group_mute($1, $2, $3)",
    [ST_GROUP_SEND] = "SELECT * FROM chatd_group_send_batch($1::bigint[], $2::bigint[],"
                      " $3::text[], $4::text[], $5::text[], $6::bigint[])",
    /* the user's membership (no row: no group; member false: never a
     * member), then the messages of its seq range as ST_HISTORY's */
    [ST_GROUP_HISTORY] =
        "WITH g AS (SELECT g.id, gm.joined_seq, gm.left_seq, gm.user_id IS NOT NULL AS member"
        "  FROM groups g LEFT JOIN group_members gm ON gm.group_id = g.id AND gm.user_id = $1"
        "  WHERE g.id = $2)"
        " SELECT g.member, " MSG_COLS " FROM g"
        " LEFT JOIN LATERAL (SELECT m2.* FROM messages m2 WHERE g.member AND m2.conv_lo = 0"
        "  AND m2.conv_hi = g.id AND m2.seq >= g.joined_seq"
        "  AND (g.left_seq = 0 OR m2.seq <= g.left_seq) AND m2.id < $3"
        "  AND m2.seq < coalesce((SELECT b.seq FROM messages b WHERE b.id = $3"
        "   AND b.conv_lo = 0 AND b.conv_hi = g.id), 9223372036854775807)"
        "  ORDER BY m2.seq DESC LIMIT $4) m ON true"
        " LEFT JOIN users u ON u.id = m.from_id ORDER BY m.seq DESC",
    [ST_GROUP_READ] = "SELECT o_status, o_result FROM chatd_group_read($1, $2)",
};

const char *store_pg_search_sql(void)
{
    return stmt_sql[ST_USER_SEARCH];
}

const char *store_pg_sync_cursors_sql(void)
{
    return stmt_sql[ST_SYNC_CURSORS];
}

typedef struct {
    char *uri;
    enum store_durability durability;
    bool primary;
    PGconn *conn;
    atomic_bool up;      /* read by store_health on the loop thread */
    int backoff_ms;      /* before the next connect attempt after a failure */
    int64_t next_try_ms; /* monotonic; no attempt before */
    bool down_logged;
    int purge_interval_ms; /* < 0: never */
    int64_t next_purge_ms; /* wall clock; 0: at the first maintain */
    bool purge_more;       /* the last purge was a full batch: go on at once */
} pg;

/* One request's parameters, built before it is sent; libpq copies them. */
#define MAX_PARAMS 7
typedef struct {
    enum stmt_id st;
    int n;
    const char *val[MAX_PARAMS];
    int len[MAX_PARAMS];
    int fmt[MAX_PARAMS];
    char num[MAX_PARAMS][24];
    char *owned[MAX_PARAMS];
    int nowned;
} params;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void p_int(params *p, int64_t v)
{
    int i = p->n++;
    snprintf(p->num[i], sizeof(p->num[i]), "%" PRId64, v);
    p->val[i] = p->num[i];
    p->len[i] = 0;
    p->fmt[i] = 0;
}

static void p_text(params *p, const char *v)
{
    int i = p->n++;
    p->val[i] = v; /* NULL is SQL NULL */
    p->len[i] = 0;
    p->fmt[i] = 0;
}

/* Takes ownership of v (freed with the params). */
static void p_owned(params *p, char *v)
{
    if (v && p->nowned < MAX_PARAMS)
        p->owned[p->nowned++] = v;
    p_text(p, v);
}

static void p_bytes(params *p, const uint8_t *v, int len)
{
    int i = p->n++;
    p->val[i] = (const char *)v;
    p->len[i] = len;
    p->fmt[i] = 1;
}

static void params_free(params *p)
{
    for (int i = 0; i < p->nowned; i++)
        free(p->owned[i]);
    p->nowned = 0;
}

/* limit <= 0 means no limit: LIMIT NULL. */
static void p_limit(params *p, int64_t limit)
{
    if (limit > 0)
        p_int(p, limit);
    else
        p_text(p, NULL);
}

static bool hash_given(const store_req *r)
{
    for (size_t i = 0; i < sizeof(r->token_hash); i++)
        if (r->token_hash[i])
            return true;
    return false;
}

/* A PostgreSQL array literal of text values, each quoted and escaped (a
 * NULL pointer is NULL); the literal travels as a parameter, never as SQL. */
static char *text_array(const char *const *v, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += (v[i] ? 2 * strlen(v[i]) : 4) + 3;
    char *out = malloc(cap), *o = out;
    if (!out)
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        if (!v[i]) {
            memcpy(o, "NULL", 4);
            o += 4;
            continue;
        }
        *o++ = '"';
        for (const char *c = v[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *o++ = '\\';
            *o++ = *c;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

/* "{1,2,3}" from integers. */
static char *int_array(const int64_t *v, size_t n)
{
    char *out = malloc(n * 22 + 3), *o = out;
    if (!out)
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++)
        o += sprintf(o, "%s%" PRId64, i ? "," : "", v[i]);
    *o++ = '}';
    *o = '\0';
    return out;
}

/* The candidate names of an external user, as store_sqlite.c's
 * op_user_external: the name, "<name>#<external_id>", "<name>#x<hex>" (key
 * "\x01" external_id). -1 when a name has no key. */
static int external_params(params *p, store_req *r)
{
    size_t alt_len = strlen(r->username) + 1 + strlen(r->external_id) + 1;
    size_t hex_len = strlen(r->username) + 2 + 2 * strlen(r->external_id) + 1;
    char *alt = malloc(alt_len), *hex = malloc(hex_len);
    char *last_key = malloc(strlen(r->external_id) + 2);
    char *keys[3] = {names_key(r->username), NULL, last_key};
    int ret = -1;
    if (alt) {
        snprintf(alt, alt_len, "%s#%s", r->username, r->external_id);
        keys[1] = names_key(alt);
    }
    if (last_key) {
        last_key[0] = '\x01';
        strcpy(last_key + 1, r->external_id);
    }
    if (hex) {
        int off = snprintf(hex, hex_len, "%s#x", r->username);
        for (const unsigned char *c = (const unsigned char *)r->external_id; *c; c++)
            off += snprintf(hex + off, hex_len - (size_t)off, "%02x", *c);
    }
    if (alt && hex && keys[0] && keys[1] && keys[2]) {
        const char *names[3] = {r->username, alt, hex};
        p_text(p, r->external_id);
        p_owned(p, text_array(names, 3));
        p_owned(p, text_array((const char *const *)keys, 3));
        p_text(p, r->userpic ? r->userpic : "");
        p_int(p, r->time);
        if (hash_given(r))
            p_bytes(p, r->token_hash, (int)sizeof(r->token_hash));
        else
            p_text(p, NULL);
        p_int(p, r->issued_at);
        ret = p->val[1] && p->val[2] ? 0 : -1;
    }
    free(alt);
    free(hex);
    for (int i = 0; i < 3; i++)
        free(keys[i]);
    return ret;
}

/* A user id of a members array: an integer or a decimal string; 0 (no
 * user has it) for anything else, as store_sqlite.c. */
static int64_t member_id_of(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v)) {
        char *end;
        long long id = strtoll(json_string_value(v), &end, 10);
        return *end == '\0' ? (int64_t)id : 0;
    }
    return 0;
}

/* "{1,2,3}" from a JSON array of user ids (NULL: "{}"). NULL when members
 * is no array, or out of memory. */
static char *members_array(const json_t *members)
{
    if (members && !json_is_array(members))
        return NULL;
    size_t n = members ? json_array_size(members) : 0;
    int64_t *ids = malloc((n ? n : 1) * sizeof(*ids));
    if (!ids)
        return NULL;
    for (size_t i = 0; i < n; i++)
        ids[i] = member_id_of(json_array_get(members, i));
    char *out = int_array(ids, n);
    free(ids);
    return out;
}

/* build() for the group operations. */
static int build_group(params *p, store_req *r)
{
    switch (r->op) {
    case STORE_GROUP_CREATE:
        if (!r->name)
            return -1;
        p->st = ST_GROUP_CREATE;
        p_int(p, r->user_id);
        p_text(p, r->name);
        p_text(p, r->avatar);
        p_owned(p, members_array(r->members));
        p_int(p, r->max_members);
        p_int(p, r->time);
        return p->val[3] ? 0 : -1;
    case STORE_GROUP_INFO:
    case STORE_GROUP_READ:
        p->st = r->op == STORE_GROUP_INFO ? ST_GROUP_INFO : ST_GROUP_READ;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        return 0;
    case STORE_GROUP_ADD:
        p->st = ST_GROUP_ADD;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        p_owned(p, members_array(r->members));
        p_int(p, r->max_members);
        p_int(p, r->time);
        return p->val[2] ? 0 : -1;
    case STORE_GROUP_REMOVE:
        p->st = ST_GROUP_REMOVE;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        p_int(p, r->peer_id);
        p_int(p, r->time);
        return 0;
    case STORE_GROUP_LEAVE:
    case STORE_GROUP_DISSOLVE:
        p->st = r->op == STORE_GROUP_LEAVE ? ST_GROUP_LEAVE : ST_GROUP_DISSOLVE;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        p_int(p, r->time);
        return 0;
    case STORE_GROUP_UPDATE:
        p->st = ST_GROUP_UPDATE;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        p_text(p, r->name);
        p_text(p, r->avatar);
        p_int(p, r->time);
        return 0;
    case STORE_GROUP_ROLE:
        if (r->action < STORE_GROUP_ROLE_MEMBER || r->action > STORE_GROUP_ROLE_OWNER)
            return -1;
        p->st = ST_GROUP_ROLE;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        p_int(p, r->peer_id);
        p_int(p, r->action);
        p_int(p, r->time);
        return 0;
    case STORE_GROUP_MUTE:
        p->st = ST_GROUP_MUTE;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        p_text(p, r->action ? "true" : "false");
        return 0;
    case STORE_GROUP_HISTORY:
        p->st = ST_GROUP_HISTORY;
        p_int(p, r->user_id);
        p_int(p, r->group_id);
        p_int(p, r->before > 0 ? r->before : INT64_MAX);
        p_limit(p, r->limit);
        return 0;
    default:
        return -1;
    }
}

/* Fills p for r. -1: r cannot be run (bad input, out of memory): it
 * answers STORE_ERROR without being sent. 1: r is answered without the
 * database (status set). */
static int build(params *p, store_req *r)
{
    memset(p, 0, sizeof(*p));
    int64_t lo = r->user_id < r->peer_id ? r->user_id : r->peer_id;
    int64_t hi = r->user_id < r->peer_id ? r->peer_id : r->user_id;
    switch (r->op) {
    case STORE_USER_CREATE: {
        char *key = r->username ? names_key(r->username) : NULL;
        if (!key)
            return -1;
        p->st = ST_USER_INSERT;
        p_text(p, r->username);
        p_text(p, r->password_hash);
        p_text(p, r->userpic ? r->userpic : "");
        p_int(p, r->time);
        p_owned(p, key);
        return 0;
    }
    case STORE_USER_BY_NAME: {
        char *key = r->username ? names_key(r->username) : NULL;
        if (!key) { /* not UTF-8: no account has that name */
            r->status = r->username ? STORE_NOT_FOUND : STORE_ERROR;
            return 1;
        }
        p->st = ST_USER_BY_NAME;
        p_owned(p, key);
        return 0;
    }
    case STORE_USER_BY_ID:
        p->st = ST_USER_BY_ID;
        p_int(p, r->user_id);
        return 0;
    case STORE_USER_EXTERNAL:
        if (!r->external_id || !r->username)
            return -1;
        p->st = ST_USER_EXTERNAL;
        return external_params(p, r);
    case STORE_USER_SEARCH: {
        if (!r->query)
            return -1;
        char *key = names_key(r->query); /* NULL if not UTF-8: no name starts with it */
        char *bound = key ? store_search_bound(key) : NULL;
        if (!bound) {
            free(key);
            r->result = json_array();
            r->status = r->result ? STORE_OK : STORE_ERROR;
            return 1;
        }
        p->st = ST_USER_SEARCH;
        p_int(p, r->user_id);
        p_owned(p, key);
        p_owned(p, bound);
        p_limit(p, r->limit);
        return 0;
    }
    case STORE_USER_ADMIN:
        if (r->action < STORE_ADMIN_REVOKE || r->action > STORE_ADMIN_ENABLE)
            return -1;
        p->st = ST_ADMIN;
        p_int(p, r->user_id);
        p_int(p, r->action);
        p_int(p, r->time);
        return 0;
    case STORE_TOKEN_PURGE:
        p->st = ST_PURGE;
        p_int(p, r->time);
        p_int(p, r->limit > 0 ? r->limit : STORE_PURGE_BATCH);
        return 0;
    case STORE_TOKEN_CREATE:
        p->st = ST_TOKEN_CREATE;
        p_bytes(p, r->token_hash, (int)sizeof(r->token_hash));
        p_int(p, r->user_id);
        p_int(p, r->expires);
        return 0;
    case STORE_TOKEN_LOOKUP:
        p->st = ST_TOKEN_LOOKUP;
        p_bytes(p, r->token_hash, (int)sizeof(r->token_hash));
        p_int(p, r->time);
        return 0;
    case STORE_TOKEN_DELETE:
        p->st = ST_TOKEN_DELETE;
        p_bytes(p, r->token_hash, (int)sizeof(r->token_hash));
        return 0;
    case STORE_JWT_REVOKE:
        p->st = ST_JWT_REVOKE;
        p_bytes(p, r->token_hash, (int)sizeof(r->token_hash));
        p_int(p, r->expires);
        p_int(p, r->time);
        return 0;
    case STORE_CHAT_LIST:
        p->st = ST_CHAT_LIST;
        p_int(p, r->user_id);
        return 0;
    case STORE_HISTORY:
        if (r->user_id <= 0 || r->peer_id <= 0) { /* (0, id) is a group's */
            r->result = json_array();
            r->status = r->result ? STORE_OK : STORE_ERROR;
            return 1;
        }
        p->st = ST_HISTORY;
        p_int(p, lo);
        p_int(p, hi);
        p_int(p, r->before > 0 ? r->before : INT64_MAX);
        p_limit(p, r->limit);
        return 0;
    case STORE_SYNC:
        p->st = ST_SYNC;
        p_int(p, r->user_id);
        p_int(p, r->after);
        p_limit(p, r->limit);
        return 0;
    case STORE_SYNC_CURSORS: {
        /* keys that are no user id (or values no seq) name no
         * conversation: skipped, as an absent cursor */
        size_t n = json_is_object(r->cursors) ? json_object_size(r->cursors) : 0, k = 0;
        int64_t *peers = malloc((n + 1) * sizeof(*peers));
        int64_t *seqs = malloc((n + 1) * sizeof(*seqs));
        const char *key;
        json_t *v;
        if (peers && seqs && n) {
            json_object_foreach(r->cursors, key, v)
            {
                /* "g<id>": a group, -id in the statement */
                bool group = key[0] == 'g';
                const char *digits = key + group;
                char *end;
                errno = 0;
                long long id = strtoll(digits, &end, 10);
                if (errno || *end || end == digits || id <= 0 || !json_is_integer(v) ||
                    (group && (*digits < '0' || *digits > '9')))
                    continue;
                peers[k] = group ? -id : id;
                seqs[k++] = json_integer_value(v);
            }
        }
        p->st = ST_SYNC_CURSORS;
        p_int(p, r->user_id);
        p_owned(p, peers ? int_array(peers, k) : NULL);
        p_owned(p, seqs ? int_array(seqs, k) : NULL);
        p_limit(p, r->limit);
        free(peers);
        free(seqs);
        return p->val[1] && p->val[2] ? 0 : -1;
    }
    case STORE_READ:
        p->st = ST_READ;
        p_int(p, r->user_id);
        p_int(p, r->peer_id);
        return 0;
    case STORE_UNREAD:
        p->st = ST_UNREAD;
        p_int(p, r->user_id);
        return 0;
    case STORE_USER_LAST_SEEN:
        p->st = ST_LAST_SEEN;
        p_int(p, r->user_id);
        p_int(p, r->time);
        return 0;
    case STORE_USER_SETTINGS:
        p->st = ST_SETTINGS;
        p_int(p, r->user_id);
        p_text(p, r->action ? "true" : "false");
        return 0;
    case STORE_PRESENCE_PEERS:
        p->st = ST_PEERS;
        p_int(p, r->user_id);
        return 0;
    default:
        return build_group(p, r);
    }
}

/* Fills p for the group sends reqs[0..n) (all with their inputs): one
 * call of chatd_group_send_batch. -1 on out of memory. */
static int build_group_sends(params *p, store_req **reqs, size_t n)
{
    memset(p, 0, sizeof(*p));
    p->st = ST_GROUP_SEND;
    /* columns: from, group, time; type, data, client_msg_id */
    int64_t *ints = malloc(3 * n * sizeof(*ints));
    const char **texts = malloc(3 * n * sizeof(*texts));
    if (ints && texts) {
        for (size_t i = 0; i < n; i++) {
            ints[i] = reqs[i]->user_id;
            ints[n + i] = reqs[i]->group_id;
            ints[2 * n + i] = reqs[i]->time;
            texts[i] = reqs[i]->msg_type;
            texts[n + i] = reqs[i]->msg_data;
            texts[2 * n + i] = reqs[i]->client_msg_id;
        }
        /* in chatd_group_send_batch's parameter order */
        p_owned(p, int_array(ints, n));
        p_owned(p, int_array(ints + n, n));
        p_owned(p, text_array(texts, n));
        p_owned(p, text_array(texts + n, n));
        p_owned(p, text_array(texts + 2 * n, n));
        p_owned(p, int_array(ints + 2 * n, n));
    }
    free(ints);
    free(texts);
    for (int i = 0; i < 6; i++)
        if (p->n != 6 || !p->val[i])
            return -1;
    return 0;
}

/* Fills p for the sends reqs[0..n) (all with their inputs): one call of
 * chatd_send_batch. -1 on out of memory. */
static int build_sends(params *p, store_req **reqs, size_t n)
{
    memset(p, 0, sizeof(*p));
    p->st = ST_SEND;
    /* columns: from, to, time; type, data, client_msg_id */
    int64_t *ints = malloc(3 * n * sizeof(*ints));
    const char **texts = malloc(3 * n * sizeof(*texts));
    if (ints && texts) {
        for (size_t i = 0; i < n; i++) {
            ints[i] = reqs[i]->user_id;
            ints[n + i] = reqs[i]->peer_id;
            ints[2 * n + i] = reqs[i]->time;
            texts[i] = reqs[i]->msg_type;
            texts[n + i] = reqs[i]->msg_data;
            texts[2 * n + i] = reqs[i]->client_msg_id;
        }
        /* in chatd_send_batch's parameter order */
        p_owned(p, int_array(ints, n));
        p_owned(p, int_array(ints + n, n));
        p_owned(p, text_array(texts, n));
        p_owned(p, text_array(texts + n, n));
        p_owned(p, int_array(ints + 2 * n, n));
        p_owned(p, text_array(texts + 2 * n, n));
    }
    free(ints);
    free(texts);
    for (int i = 0; i < 6; i++)
        if (p->n != 6 || !p->val[i])
            return -1;
    return 0;
}

/* ---- results ---------------------------------------------------------- */

static int64_t col_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static const char *col_text(const PGresult *res, int row, int col)
{
    return PQgetvalue(res, row, col); /* "" when NULL */
}

static const char *col_text_or_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static bool col_bool(const PGresult *res, int row, int col)
{
    return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

static json_t *user_json(const PGresult *res, int row)
{
    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)col_int(res, row, 0), "username",
                     col_text(res, row, 1), "userpic", col_text(res, row, 2));
}

/* The last_seen others see (columns c: last_seen, c + 1: hide_last_seen):
 * null when hidden or never seen offline (0). */
static json_t *last_seen_json(const PGresult *res, int row, int c)
{
    int64_t t = col_int(res, row, c);
    return t > 0 && !col_bool(res, row, c + 1) ? json_integer(t) : json_null();
}

/* A user as others see it, with last_seen (columns 3..4). */
static json_t *peer_user_json(const PGresult *res, int row)
{
    json_t *u = user_json(res, row);
    if (u && json_object_set_new(u, "last_seen", last_seen_json(res, row, 3)) != 0) {
        json_decref(u);
        u = NULL;
    }
    return u;
}

static json_t *peers_json(const PGresult *res)
{
    json_t *peers = json_array();
    for (int i = 0, n = PQntuples(res); peers && i < n; i++) {
        if (!PQgetisnull(res, i, 2) &&
            json_array_append_new(peers, json_integer(col_int(res, i, 2))) != 0) {
            json_decref(peers);
            peers = NULL;
        }
    }
    return peers ? json_pack("{s:b, s:I, s:o}", "hide_last_seen", col_bool(res, 0, 0), "last_seen",
                             (json_int_t)col_int(res, 0, 1), "peers", peers)
                 : NULL;
}

/* A message from the MSG_COLS columns starting at c: a group's (to_id 0)
 * with group_id instead of to_id. */
static json_t *msg_json_at(const PGresult *res, int row, int c)
{
    if (col_int(res, row, c + 2) == 0)
        return json_pack(
            "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
            (json_int_t)col_int(res, row, c), "seq", (json_int_t)col_int(res, row, c + 1),
            "group_id", (json_int_t)col_int(res, row, c + 10), "from_id",
            (json_int_t)col_int(res, row, c + 3), "from_username", col_text(res, row, c + 4),
            "from_userpic", col_text(res, row, c + 5), "type", col_text(res, row, c + 6), "data",
            col_text(res, row, c + 7), "time", (json_int_t)col_int(res, row, c + 8),
            "client_msg_id", col_text_or_null(res, row, c + 9));
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
        (json_int_t)col_int(res, row, c), "seq", (json_int_t)col_int(res, row, c + 1), "to_id",
        (json_int_t)col_int(res, row, c + 2), "from_id", (json_int_t)col_int(res, row, c + 3),
        "from_username", col_text(res, row, c + 4), "from_userpic", col_text(res, row, c + 5),
        "type", col_text(res, row, c + 6), "data", col_text(res, row, c + 7), "time",
        (json_int_t)col_int(res, row, c + 8), "client_msg_id", col_text_or_null(res, row, c + 9));
}

static json_t *msg_json(const PGresult *res, int row)
{
    return msg_json_at(res, row, 0);
}

static json_t *rows_json(const PGresult *res, json_t *(*fn)(const PGresult *, int))
{
    json_t *arr = json_array();
    for (int i = 0, n = PQntuples(res); arr && i < n; i++) {
        if (json_array_append_new(arr, fn(res, i)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

static const char *role_name(int64_t role)
{
    return role == STORE_GROUP_ROLE_OWNER   ? "owner"
           : role == STORE_GROUP_ROLE_ADMIN ? "admin"
                                            : "member";
}

/* A row of ST_CHAT_LIST: column 0 says 1:1 (0) or group (1). */
static json_t *chat_item_json(const PGresult *res, int i)
{
    if (col_int(res, i, 0) == 1)
        return json_pack(
            "{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:s, s:I, s:b, "
            "s:b}",
            "chat_type", "group", "group_id", (json_int_t)col_int(res, i, 1), "name",
            col_text(res, i, 2), "avatar", col_text(res, i, 3), "type", col_text(res, i, 4), "data",
            col_text(res, i, 5), "time", (json_int_t)col_int(res, i, 6), "noreadnum",
            (json_int_t)col_int(res, i, 7), "last_message_id", (json_int_t)col_int(res, i, 8),
            "last_seq", (json_int_t)col_int(res, i, 9), "from_id", (json_int_t)col_int(res, i, 12),
            "from_username", col_text(res, i, 13), "muted", col_bool(res, i, 14), "role",
            role_name(col_int(res, i, 15)), "member_count", (json_int_t)col_int(res, i, 16),
            "dissolved", col_bool(res, i, 17), "left", col_bool(res, i, 18));
    return json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "chat_type",
                     "single", "userid", (json_int_t)col_int(res, i, 1), "username",
                     col_text(res, i, 2), "userpic", col_text(res, i, 3), "type",
                     col_text(res, i, 4), "data", col_text(res, i, 5), "time",
                     (json_int_t)col_int(res, i, 6), "noreadnum", (json_int_t)col_int(res, i, 7),
                     "last_message_id", (json_int_t)col_int(res, i, 8), "last_seq",
                     (json_int_t)col_int(res, i, 9), "last_seen", last_seen_json(res, i, 10));
}

/* ST_UNREAD's rows -> {total, conversations, groups}; muted groups are
 * listed but left out of total. */
static json_t *unread_json(const PGresult *res)
{
    json_t *convs = json_array(), *groups = json_array();
    json_int_t total = 0;
    bool ok = convs && groups;
    for (int i = 0, n = PQntuples(res); ok && i < n; i++) {
        json_int_t id = (json_int_t)col_int(res, i, 1), num = (json_int_t)col_int(res, i, 2);
        bool muted = col_bool(res, i, 3);
        if (!muted)
            total += num;
        if (col_int(res, i, 0) == 1)
            ok = json_array_append_new(groups, json_pack("{s:I, s:I, s:b}", "group_id", id,
                                                         "noreadnum", num, "muted", muted)) == 0;
        else
            ok = json_array_append_new(
                     convs, json_pack("{s:I, s:I}", "userid", id, "noreadnum", num)) == 0;
    }
    if (!ok) {
        json_decref(convs);
        json_decref(groups);
        return NULL;
    }
    return json_pack("{s:I, s:o, s:o}", "total", total, "conversations", convs, "groups", groups);
}

/* An error of a group operation: {code, message}. */
static json_t *group_err(const char *code, const char *message)
{
    return json_pack("{s:s, s:s}", "code", code, "message", message);
}

/* The answer of a group function, (o_status, o_result JSON): status is
 * enum store_status's, result the JSON (the error's when not OK). */
static int answer_group(store_req *r, const PGresult *res)
{
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1))
        return STORE_ERROR;
    int64_t st = col_int(res, 0, 0);
    if (st != STORE_OK && st != STORE_NOT_FOUND && st != STORE_CONFLICT && st != STORE_FORBIDDEN)
        return STORE_ERROR;
    json_error_t e;
    r->result = json_loads(col_text(res, 0, 1), 0, &e);
    if (!r->result) {
        log_error("store: group answer: %s", e.text);
        return STORE_ERROR;
    }
    return (int)st;
}

/* The member ids of the groups of one chatd_group_send_batch answer: each
 * group's comes once (on its first accepted send) and is shared by the
 * results of all its sends (read-only; jansson's reference counts are
 * atomic). */
typedef struct {
    int64_t gid;
    json_t *ids;
} group_members_seen;

/* Turns row `row` of chatd_group_send_batch's answer into group send r's
 * outputs. Returns the status. */
static int answer_group_send(store_req *r, const PGresult *res, int row, group_members_seen *seen,
                             size_t *nseen)
{
    int64_t st = col_int(res, row, 1);
    json_error_t e;
    if (st != STORE_OK) {
        if (st != STORE_NOT_FOUND && st != STORE_CONFLICT && st != STORE_FORBIDDEN)
            return STORE_ERROR;
        r->result = json_loads(col_text(res, row, 7), 0, &e);
        return r->result ? (int)st : STORE_ERROR;
    }
    json_t *members = NULL;
    for (size_t i = 0; i < *nseen && !members; i++)
        if (seen[i].gid == r->group_id)
            members = seen[i].ids;
    if (!members && !PQgetisnull(res, row, 8)) {
        members = json_loads(col_text(res, row, 8), 0, &e);
        if (members) /* seen has a place for each send of the run */
            seen[(*nseen)++] = (group_members_seen){r->group_id, members};
    }
    if (!members)
        return STORE_ERROR;
    json_t *msg;
    r->duplicate = col_bool(res, row, 6);
    if (r->duplicate)
        msg = json_loads(col_text(res, row, 7), 0, &e);
    else
        msg = json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
                        (json_int_t)col_int(res, row, 2), "seq", (json_int_t)col_int(res, row, 3),
                        "group_id", (json_int_t)r->group_id, "from_id", (json_int_t)r->user_id,
                        "from_username", col_text(res, row, 4), "from_userpic",
                        col_text(res, row, 5), "type", r->msg_type, "data", r->msg_data, "time",
                        (json_int_t)r->time, "client_msg_id", r->client_msg_id);
    r->result = msg ? json_pack("{s:o, s:O}", "message", msg, "members", members) : NULL;
    return r->result ? STORE_OK : STORE_ERROR;
}

/* ST_GROUP_HISTORY's rows: (member, MSG_COLS or NULLs). */
static int answer_group_history(store_req *r, const PGresult *res)
{
    int n = PQntuples(res);
    if (n == 0) {
        r->result = group_err("not_found", "No such group.");
        return r->result ? STORE_NOT_FOUND : STORE_ERROR;
    }
    if (!col_bool(res, 0, 0)) {
        r->result = group_err("not_member", "You are not a member of this group.");
        return r->result ? STORE_FORBIDDEN : STORE_ERROR;
    }
    r->result = json_array();
    for (int i = 0; r->result && i < n; i++) {
        if (PQgetisnull(res, i, 1))
            continue;
        if (json_array_append_new(r->result, msg_json_at(res, i, 1)) != 0) {
            json_decref(r->result);
            r->result = NULL;
        }
    }
    return r->result ? STORE_OK : STORE_ERROR;
}

/* Rows (peer, last_seq, cursor, MSG_COLS or NULLs), grouped by
 * conversation -> {conversations: [{userid, messages, more}]}, cutting the
 * whole answer to limit messages: more says the conversation holds
 * messages past the last one given (or past the cursor, when none was). */
static json_t *cursors_json(const PGresult *res, int64_t limit)
{
    json_t *convs = json_array();
    bool ok = convs != NULL;
    int64_t taken = 0;
    int n = PQntuples(res);
    for (int i = 0; ok && i < n;) {
        int64_t peer = col_int(res, i, 0), last_seq = col_int(res, i, 1);
        int64_t top = col_int(res, i, 2);
        json_t *msgs = json_array();
        ok = msgs != NULL;
        for (; ok && i < n && col_int(res, i, 0) == peer; i++) {
            if (PQgetisnull(res, i, 3) || (limit > 0 && taken >= limit))
                continue;
            ok = json_array_append_new(msgs, msg_json_at(res, i, 3)) == 0;
            top = col_int(res, i, 4);
            taken++;
        }
        /* a group is -(its id) */
        json_t *c = ok ? json_pack("{s:I, s:o, s:b}", peer < 0 ? "group_id" : "userid",
                                   (json_int_t)(peer < 0 ? -peer : peer), "messages", msgs, "more",
                                   top < last_seq)
                       : (json_decref(msgs), NULL); /* "o" took msgs, also on failure */
        ok = c && json_array_append_new(convs, c) == 0;
    }
    if (!ok) {
        json_decref(convs);
        return NULL;
    }
    return json_pack("{s:o}", "conversations", convs);
}

/* Turns row `row` of chatd_send_batch's answer into send r's outputs.
 * Returns the status. */
static int answer_send(store_req *r, const PGresult *res, int row)
{
    if (col_int(res, row, 1) == 1)
        return STORE_NOT_FOUND;
    if (col_int(res, row, 1) != 0)
        return STORE_ERROR;
    r->duplicate = col_bool(res, row, 6);
    if (r->duplicate)
        r->result =
            json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
                      (json_int_t)col_int(res, row, 2), "seq", (json_int_t)col_int(res, row, 3),
                      "to_id", (json_int_t)col_int(res, row, 7), "from_id", (json_int_t)r->user_id,
                      "from_username", col_text(res, row, 4), "from_userpic", col_text(res, row, 5),
                      "type", col_text(res, row, 8), "data", col_text(res, row, 9), "time",
                      (json_int_t)col_int(res, row, 10), "client_msg_id", r->client_msg_id);
    else
        r->result = json_pack(
            "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
            (json_int_t)col_int(res, row, 2), "seq", (json_int_t)col_int(res, row, 3), "to_id",
            (json_int_t)r->peer_id, "from_id", (json_int_t)r->user_id, "from_username",
            col_text(res, row, 4), "from_userpic", col_text(res, row, 5), "type", r->msg_type,
            "data", r->msg_data, "time", (json_int_t)r->time, "client_msg_id", r->client_msg_id);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* Turns r's result into its outputs. Returns the status. */
static int answer(store_req *r, const PGresult *res)
{
    int n = PQntuples(res);
    switch (r->op) {
    case STORE_USER_CREATE:
        if (n == 0)
            return STORE_CONFLICT;
        r->result = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)col_int(res, 0, 0), "username",
                              r->username, "userpic", r->userpic ? r->userpic : "");
        break;
    case STORE_USER_BY_NAME:
        if (n == 0)
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:I, s:s, s:s, s:s?, s:b}", "id", (json_int_t)col_int(res, 0, 0),
                              "username", col_text(res, 0, 1), "userpic", col_text(res, 0, 2),
                              "password_hash", col_text_or_null(res, 0, 3), "disabled",
                              col_bool(res, 0, 4));
        break;
    case STORE_USER_BY_ID:
    case STORE_TOKEN_LOOKUP:
        if (n == 0)
            return STORE_NOT_FOUND;
        /* plus the token's expiry, so the token cache never outlives it */
        r->result = user_json(res, 0);
        if (r->result &&
            json_object_set_new(r->result, "expires", json_integer(col_int(res, 0, 3))) != 0) {
            json_decref(r->result);
            r->result = NULL;
        }
        break;
    case STORE_USER_EXTERNAL:
        if (n != 1)
            return STORE_ERROR;
        if (col_int(res, 0, 0) == 1)
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)col_int(res, 0, 1), "username",
                              col_text(res, 0, 2), "userpic", r->userpic ? r->userpic : "");
        break;
    case STORE_USER_SEARCH:
        r->result = rows_json(res, peer_user_json);
        break;
    case STORE_USER_LAST_SEEN:
        r->result = json_null();
        return n > 0 ? STORE_OK : STORE_NOT_FOUND;
    case STORE_USER_SETTINGS:
        if (n == 0)
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:b}", "hide_last_seen", r->action ? 1 : 0);
        break;
    case STORE_PRESENCE_PEERS:
        if (n == 0)
            return STORE_NOT_FOUND;
        r->result = peers_json(res);
        break;
    case STORE_TOKEN_CREATE:
        if (n != 1)
            return STORE_ERROR;
        if (col_int(res, 0, 0) == 0)
            return STORE_NOT_FOUND;
        if (col_int(res, 0, 1) == 0)
            return STORE_CONFLICT;
        r->result = json_null();
        break;
    case STORE_TOKEN_DELETE:
        r->result = json_null();
        return n > 0 ? STORE_OK : STORE_NOT_FOUND;
    case STORE_JWT_REVOKE:
        r->result = json_null();
        break;
    case STORE_CHAT_LIST:
        r->result = rows_json(res, chat_item_json);
        break;
    case STORE_HISTORY:
    case STORE_SYNC:
        r->result = rows_json(res, msg_json);
        break;
    case STORE_SYNC_CURSORS:
        r->result = cursors_json(res, r->limit);
        break;
    case STORE_READ:
        if (n != 1)
            return STORE_ERROR;
        if (col_int(res, 0, 0) == 1)
            return STORE_NOT_FOUND;
        r->result =
            json_pack("{s:I, s:I, s:b}", "total", (json_int_t)col_int(res, 0, 1), "last_read_id",
                      (json_int_t)col_int(res, 0, 2), "changed", col_bool(res, 0, 3));
        break;
    case STORE_USER_ADMIN:
        if (n != 1)
            return STORE_ERROR;
        if (!col_bool(res, 0, 0))
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:I, s:b}", "tokens_deleted", (json_int_t)col_int(res, 0, 1),
                              "disabled", r->action == STORE_ADMIN_DISABLE);
        break;
    case STORE_TOKEN_PURGE:
        if (n != 1)
            return STORE_ERROR;
        r->result = json_pack("{s:I, s:I}", "tokens", (json_int_t)col_int(res, 0, 0), "jwts",
                              (json_int_t)col_int(res, 0, 1));
        break;
    case STORE_UNREAD:
        r->result = unread_json(res);
        break;
    case STORE_GROUP_HISTORY:
        return answer_group_history(r, res);
    case STORE_GROUP_CREATE:
    case STORE_GROUP_INFO:
    case STORE_GROUP_ADD:
    case STORE_GROUP_REMOVE:
    case STORE_GROUP_LEAVE:
    case STORE_GROUP_UPDATE:
    case STORE_GROUP_ROLE:
    case STORE_GROUP_DISSOLVE:
    case STORE_GROUP_MUTE:
    case STORE_GROUP_READ:
        return answer_group(r, res);
    default:
        return STORE_ERROR;
    }
    return r->result ? STORE_OK : STORE_ERROR;
}

/* ---- connection ------------------------------------------------------- */

static void set_up(pg *b, bool up)
{
    atomic_store(&b->up, up);
}

/* Drops the connection; the next attempt waits for the backoff. */
static void conn_lost(pg *b, const char *why)
{
    if (!b->down_logged)
        log_warn("store: PostgreSQL connection%s lost: %s", b->primary ? "" : " (reader)", why);
    b->down_logged = true;
    if (b->conn)
        PQfinish(b->conn);
    b->conn = NULL;
    set_up(b, false);
    b->next_try_ms = now_ms() + b->backoff_ms;
}

/* Waits until the socket can be read or (if want_write) written, or until
 * deadline_ms (monotonic; 0: no deadline). 0 ready, 1 deadline passed, -1
 * error. */
static int wait_socket(PGconn *c, bool want_write, int64_t deadline_ms)
{
    struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN | (want_write ? POLLOUT : 0)};
    int rc;
    do {
        int wait = -1;
        if (deadline_ms) {
            int64_t left = deadline_ms - now_ms();
            if (left <= 0)
                return 1;
            wait = (int)left;
        }
        rc = poll(&pfd, 1, wait);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -1 : rc == 0 ? 1 : 0;
}

/* After a PQsend* on a blocking connection outside pipeline mode: the last
 * result of the command (the caller clears it), or NULL when the connection
 * failed or deadline_ms (0: none) passed first. PQexec would wait forever
 * on a server that accepted the statement and never answers. */
static PGresult *await_result(PGconn *c, int64_t deadline_ms)
{
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (wait_socket(c, false, deadline_ms) != 0 || PQconsumeInput(c) != 1) {
                PQclear(last);
                return NULL;
            }
        }
        PGresult *res = PQgetResult(c);
        if (!res)
            return last;
        PQclear(last);
        last = res;
    }
}

/* Runs a statement of constant text outside the pipeline (set-up only),
 * waiting for its answer until deadline_ms (0: no deadline). */
static int exec_simple(PGconn *c, const char *sql, int64_t deadline_ms, char *err, size_t err_len)
{
    PGresult *res = PQsendQuery(c, sql) == 1 ? await_result(c, deadline_ms) : NULL;
    ExecStatusType st = PQresultStatus(res);
    int ret = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (ret != 0 && err)
        snprintf(err, err_len, "%s",
                 res || PQstatus(c) == CONNECTION_BAD ? PQerrorMessage(c) : "no answer in time");
    PQclear(res);
    return ret;
}

static int migrate(PGconn *c, char *err, size_t err_len)
{
    char lock[96];
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_lock(%lld)", (long long)MIGRATION_LOCK);
    if (exec_simple(c, lock, 0, err, err_len) != 0)
        return -1;
    int ret = -1;
    if (exec_simple(c, "CREATE TABLE IF NOT EXISTS schema_version(version int NOT NULL)", 0, err,
                    err_len) != 0)
        goto out;
    PGresult *res = PQsendQuery(c, "SELECT coalesce(max(version), 0) FROM schema_version") == 1
                        ? await_result(c, 0)
                        : NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(err, err_len, "read schema_version: %s", PQerrorMessage(c));
        PQclear(res);
        goto out;
    }
    int version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (version > SCHEMA_VERSION) {
        snprintf(err, err_len, "database schema version %d is newer than this chatd (%d)", version,
                 SCHEMA_VERSION);
        goto out;
    }
    for (int i = version; i < SCHEMA_VERSION; i++) {
        char set[80];
        snprintf(set, sizeof(set), "INSERT INTO schema_version VALUES (%d)", i + 1);
        if (exec_simple(c, "BEGIN", 0, err, err_len) != 0)
            goto out;
        if (exec_simple(c, migrations[i], 0, err, err_len) != 0 ||
            exec_simple(c, set, 0, err, err_len) != 0 ||
            exec_simple(c, "COMMIT", 0, err, err_len) != 0) {
            char e[200];
            snprintf(e, sizeof(e), "%s", err);
            snprintf(err, err_len, "migration %d: %s", i + 1, e);
            exec_simple(c, "ROLLBACK", 0, NULL, 0);
            goto out;
        }
        log_info("store: PostgreSQL schema migrated to version %d", i + 1);
    }
    ret = 0;
out:
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_unlock(%lld)", (long long)MIGRATION_LOCK);
    exec_simple(c, lock, 0, NULL, 0);
    return ret;
}

/* Opens and prepares a connection. 0, or -1 with err. */
static int conn_open(pg *b, bool migrating, char *err, size_t err_len)
{
    /* Ours first, so the URI's own settings win; connect_timeout bounds
     * the connect, keepalives and tcp_user_timeout notice a server that is
     * gone (a live one that does not answer is ANSWER_TIMEOUT_MS's). */
    const char *keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "fallback_application_name",
                          "dbname",
                          NULL};
    const char *vals[] = {"2", "10", "5", "3", "10000", "chatd", b->uri, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(err, err_len, "%s", c ? PQerrorMessage(c) : "out of memory");
        /* libpq messages end with a newline */
        size_t l = strlen(err);
        while (l && (err[l - 1] == '\n' || err[l - 1] == ' '))
            err[--l] = '\0';
        PQfinish(c);
        return -1;
    }
    /* Migrations may legitimately take long (and wait for another node's):
     * no deadline and no server timeouts for them; everything after is
     * bounded, so a reconnect cannot hang a storage thread either. */
    char timeouts[96];
    snprintf(timeouts, sizeof(timeouts), "SET lock_timeout = %d; SET statement_timeout = %d",
             LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS);
    int64_t deadline = now_ms() + ANSWER_TIMEOUT_MS;
    if (exec_simple(c, "SET client_min_messages = warning", deadline, err, err_len) != 0 ||
        (b->durability == STORE_DURABLE_NORMAL &&
         exec_simple(c, "SET synchronous_commit = off", deadline, err, err_len) != 0) ||
        (migrating && migrate(c, err, err_len) != 0)) {
        PQfinish(c);
        return -1;
    }
    deadline = now_ms() + ANSWER_TIMEOUT_MS;
    if (exec_simple(c, timeouts, deadline, err, err_len) != 0) {
        PQfinish(c);
        return -1;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        PGresult *res =
            PQsendPrepare(c, name, stmt_sql[i], 0, NULL) == 1 ? await_result(c, deadline) : NULL;
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            snprintf(err, err_len, "prepare statement %d: %s", i,
                     res || PQstatus(c) == CONNECTION_BAD ? PQerrorMessage(c)
                                                          : "no answer in time");
            PQclear(res);
            PQfinish(c);
            return -1;
        }
        PQclear(res);
    }
    /* Non-blocking: a big pass is written while its first answers are
     * read, or both sides could block on full socket buffers. */
    if (PQenterPipelineMode(c) != 1 || PQsetnonblocking(c, 1) != 0) {
        snprintf(err, err_len, "pipeline mode: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    b->conn = c;
    return 0;
}

/* A connection is usable, (re)connecting when the backoff allows. */
static bool ensure_conn(pg *b)
{
    if (b->conn) {
        /* Between passes nothing may arrive: readable means the server
         * closed the session (a restart's notice, or EOF). Reconnect now
         * rather than fail the next pass on it. */
        struct pollfd pfd = {.fd = PQsocket(b->conn), .events = POLLIN};
        if (poll(&pfd, 1, 0) == 0)
            return true;
        conn_lost(b, "the server closed the connection");
        b->next_try_ms = 0;
    }
    if (now_ms() < b->next_try_ms)
        return false;
    char err[512];
    if (conn_open(b, false, err, sizeof(err)) != 0) {
        if (!b->down_logged)
            log_warn("store: cannot connect to PostgreSQL: %s", err);
        b->down_logged = true;
        b->next_try_ms = now_ms() + b->backoff_ms;
        b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
        set_up(b, false);
        return false;
    }
    if (b->down_logged)
        log_info("store: PostgreSQL connection%s back", b->primary ? "" : " (reader)");
    b->down_logged = false;
    b->backoff_ms = BACKOFF_MIN_MS;
    set_up(b, true);
    return true;
}

/* SQLSTATEs that mean the server or the connection, not the request. */
static bool sqlstate_unavailable(const char *st)
{
    if (!st)
        return false;
    return strncmp(st, "08", 2) == 0 ||  /* connection exception */
           strncmp(st, "57P", 3) == 0 || /* admin shutdown, crash shutdown, cannot connect now */
           strncmp(st, "53", 2) == 0 ||  /* insufficient resources */
           strcmp(st, "25006") == 0 ||   /* read-only transaction: a standby after failover */
           /* Our lock_timeout and statement_timeout (or a cancel): the
            * server did not serve the pass in time. Re-running its requests
            * one by one would wait as long again for each. */
           strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0;
}

/* ---- a pass ------------------------------------------------------------ */

/* One statement of a pipeline: the requests [first, first + count) it
 * answers (a run of consecutive sends is one chatd_send_batch call). */
typedef struct {
    size_t first, count;
} slot;

/* Sends reqs[0..n) as one pipeline ending in a Sync (one implicit
 * transaction, committed by the Sync) and reads every answer. Returns 0
 * when the transaction committed (each request's outputs set; STORE_ERROR
 * only for one that could not be sent or answered, which wrote nothing or
 * committed with the rest, so it must not be re-run),
 * STORE_ERROR when a statement failed (the transaction rolled back, the
 * connection is fine), STORE_UNAVAILABLE when the connection failed (the
 * outcome of a Sync not answered is unknown). */
static int pipeline(pg *b, store_req **reqs, size_t n)
{
    PGconn *c = b->conn;
    int64_t deadline = now_ms() + ANSWER_TIMEOUT_MS;
    bool synced = false, fatal = false, lost = false, late = false;
    char errbuf[300] = "";
    int fail_state = STORE_ERROR;
    slot *slots = malloc((n ? n : 1) * sizeof(*slots));
    size_t nslots = 0;
    if (!slots)
        return STORE_ERROR;
    for (size_t i = 0; i < n && !lost;) {
        params p;
        size_t count = 1;
        int rc;
        store_op op = reqs[i]->op;
        if (op == STORE_MESSAGE_SEND || op == STORE_GROUP_SEND) {
            while (i + count < n && reqs[i + count]->op == op)
                count++;
            rc = 0;
            for (size_t k = i; k < i + count; k++)
                if (!reqs[k]->msg_type || !reqs[k]->msg_data)
                    rc = -1;
            if (rc != 0)
                memset(&p, 0, sizeof(p));
            else if (op == STORE_MESSAGE_SEND)
                rc = build_sends(&p, reqs + i, count);
            else
                rc = build_group_sends(&p, reqs + i, count);
        } else {
            rc = build(&p, reqs[i]);
        }
        if (rc == 0) {
            char name[16];
            snprintf(name, sizeof(name), "s%d", (int)p.st);
            if (PQsendQueryPrepared(c, name, p.n, p.val, p.len, p.fmt, 0) != 1)
                lost = true;
            slots[nslots++] = (slot){i, count};
        } else if (rc < 0) {
            /* Not sent: it alone answers STORE_ERROR, the others commit. */
            log_error("store: request %d without its inputs", (int)reqs[i]->op);
            for (size_t k = i; k < i + count; k++)
                reqs[k]->status = STORE_ERROR;
        }
        /* rc 1: answered without the database */
        params_free(&p);
        i += count;
    }
    /* Always sent, even after a failed build: it ends the pipeline. */
    if (!lost && PQpipelineSync(c) != 1)
        lost = true;
    /* Answers: per statement one result and a NULL, then the Sync's. */
    size_t next = 0;
    while (!lost && !synced) {
        int f = PQflush(c);
        if (f < 0) {
            lost = true;
            break;
        }
        while (!lost && !synced && !PQisBusy(c)) {
            PGresult *res = PQgetResult(c);
            if (!res)
                continue; /* the end of one statement's results */
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_PIPELINE_SYNC) {
                synced = true;
            } else if (next >= nslots) {
                lost = true; /* more results than statements: cannot happen */
            } else {
                slot sl = slots[next++];
                if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                    /* An answer that cannot be built (out of memory)
                     * fails its request only: the transaction still
                     * commits, so the pass must not be re-run. */
                    store_op op = reqs[sl.first]->op;
                    bool batch = op == STORE_MESSAGE_SEND || op == STORE_GROUP_SEND;
                    bool rows_ok = !batch || (size_t)PQntuples(res) == sl.count;
                    if (!rows_ok)
                        log_error("store: a send batch: %d rows for %zu sends", PQntuples(res),
                                  sl.count);
                    group_members_seen *seen =
                        op == STORE_GROUP_SEND ? malloc(sl.count * sizeof(*seen)) : NULL;
                    size_t nseen = 0;
                    for (size_t k = 0; k < sl.count; k++) {
                        store_req *r = reqs[sl.first + k];
                        if (!rows_ok || (op == STORE_GROUP_SEND && !seen))
                            r->status = STORE_ERROR;
                        else if (op == STORE_MESSAGE_SEND)
                            r->status = answer_send(r, res, (int)k);
                        else if (op == STORE_GROUP_SEND)
                            r->status = answer_group_send(r, res, (int)k, seen, &nseen);
                        else
                            r->status = answer(r, res);
                        if (r->status == STORE_ERROR)
                            log_error("store: request %d: its answer cannot be built", (int)r->op);
                    }
                    for (size_t k = 0; k < nseen; k++)
                        json_decref(seen[k].ids);
                    free(seen);
                } else if (st != PGRES_PIPELINE_ABORTED) {
                    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                    if (sqlstate_unavailable(state))
                        fail_state = STORE_UNAVAILABLE;
                    if (!errbuf[0])
                        snprintf(errbuf, sizeof(errbuf), "%s (SQLSTATE %s)",
                                 PQresultErrorMessage(res), state ? state : "none");
                    fatal = true;
                } else {
                    fatal = true;
                }
            }
            PQclear(res);
        }
        if (lost || synced)
            break;
        int w = PQstatus(c) == CONNECTION_BAD ? -1 : wait_socket(c, f == 1, deadline);
        late = w == 1;
        if (w != 0 || PQconsumeInput(c) != 1) {
            lost = true;
            break;
        }
    }
    free(slots);
    if (late) {
        /* The outcome is unknown (the Sync may yet commit): every request
         * answers STORE_UNAVAILABLE and a client's retry is idempotent. The
         * cancel frees the locks the pass holds (the server's own timeouts
         * do too, unless its backend is stopped); the connection, in the
         * middle of a pipeline, is dropped. PQcancel has no timeout of its
         * own in libpq 15, but it only connects (bounded by TCP's) and
         * sends the request to the postmaster, which answers at once. */
        PGcancel *cancel = PQgetCancel(c);
        char why[256];
        if (cancel && PQcancel(cancel, why, sizeof(why)) != 1)
            log_warn("store: PostgreSQL cancel: %s", why);
        PQfreeCancel(cancel);
        snprintf(why, sizeof(why), "no answer within %d ms", ANSWER_TIMEOUT_MS);
        conn_lost(b, why);
        return STORE_UNAVAILABLE;
    }
    if (lost || PQstatus(c) == CONNECTION_BAD) {
        conn_lost(b, PQerrorMessage(c));
        return STORE_UNAVAILABLE;
    }
    if (errbuf[0]) {
        /* one line in the log: libpq's message ends with a newline */
        for (char *q = errbuf; *q; q++)
            if (*q == '\n')
                *q = ' ';
        if (fail_state == STORE_UNAVAILABLE)
            conn_lost(b, errbuf);
        else
            log_warn("store: PostgreSQL: %s", errbuf);
    }
    return fatal ? fail_state : 0;
}

static int pg_run(void *p, store_req **reqs, size_t n)
{
    pg *b = p;
    if (!ensure_conn(b))
        return STORE_UNAVAILABLE;
    int rc = pipeline(b, reqs, n);
    if (rc == 0)
        set_up(b, true);
    return rc;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The background purge (store_sqlite.c's purge_maybe): on the writer's
 * connection, one pipeline of one chatd_token_purge call, bounded by
 * STORE_PURGE_BATCH rows a table, so it holds the writer for about one
 * round trip. Every node purges; SKIP LOCKED keeps them apart. */
static void purge_maybe(pg *b)
{
    if (!b->primary || b->purge_interval_ms < 0 || !b->conn)
        return;
    int64_t now = wall_ms();
    if (!b->purge_more && now < b->next_purge_ms)
        return;
    store_req r = {.op = STORE_TOKEN_PURGE, .time = now, .limit = STORE_PURGE_BATCH};
    store_req *rp = &r;
    int64_t tokens = 0, jwts = 0;
    if (pipeline(b, &rp, 1) == 0 && r.status == STORE_OK) {
        tokens = json_integer_value(json_object_get(r.result, "tokens"));
        jwts = json_integer_value(json_object_get(r.result, "jwts"));
        if (tokens || jwts)
            log_debug("store: purged %lld expired tokens, %lld revoked JWTs", (long long)tokens,
                      (long long)jwts);
    }
    json_decref(r.result);
    b->purge_more = tokens >= STORE_PURGE_BATCH || jwts >= STORE_PURGE_BATCH;
    b->next_purge_ms = now + b->purge_interval_ms;
}

static void pg_maintain(void *p, bool idle)
{
    pg *b = p;
    /* A probe when idle: notices a lost connection (for /healthz) and
     * reconnects once the backoff allows. */
    if (idle)
        ensure_conn(b);
    purge_maybe(b);
}

static bool pg_healthy(void *p)
{
    return atomic_load(&((pg *)p)->up);
}

static void pg_close(void *p)
{
    pg *b = p;
    if (!b)
        return;
    if (b->conn)
        PQfinish(b->conn);
    free(b->uri);
    free(b);
}

static void *pg_open(const store_options *o, bool primary, char *err, size_t err_len)
{
    pg *b = calloc(1, sizeof(*b));
    if (!b || !(b->uri = strdup(o->store))) {
        free(b);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    b->durability = o->durability;
    b->primary = primary;
    b->backoff_ms = BACKOFF_MIN_MS;
    b->purge_interval_ms = o->purge_interval_ms ? o->purge_interval_ms : STORE_PURGE_INTERVAL_MS;
    atomic_init(&b->up, false);
    if (conn_open(b, primary, err, err_len) != 0) {
        if (primary) {
            pg_close(b);
            return NULL;
        }
        /* a reader connects later, at its first request */
        log_warn("store: PostgreSQL reader connection: %s", err);
        b->down_logged = true;
        return b;
    }
    set_up(b, true);
    return b;
}

const struct store_backend_ops store_pg_backend = {
    .name = "postgresql",
    .open = pg_open,
    .run = pg_run,
    .maintain = pg_maintain,
    .healthy = pg_healthy,
    .close = pg_close,
};
