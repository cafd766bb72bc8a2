/* store_pg_schema: the PostgreSQL backend's schema: the migrations (the
 * tables, their indexes and the server functions the write ops call, see
 * store_pg.c) and pg_migrate, which brings a database to the latest
 * version once, however many nodes start at the same time. The migrations
 * have run in the field: never edit one, append a new one. */
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "core/log.h"
#include "store/store_pg_internal.h"

/* Taken around the migrations, so N nodes starting at once migrate once.
 * Any constant works as long as nothing else in the database uses it:
 * "chatd" in ASCII. */
#define MIGRATION_LOCK 0x6368617464LL

/* The message columns chatd_recall answers, as MSG_COLS_SEEN (for p_user). */
#define RECALL_COLS                                                                                \
    "m.id, m.seq, m.to_id, m.from_id, u.username, u.userpic, m.type, m.data, m.time,"              \
    " m.client_msg_id, m.conv_hi, m.recalled, m.width, m.height, EXISTS (SELECT 1 FROM"            \
    " hidden_messages h WHERE h.user_id = p_user AND h.message_id = m.id)"

/* STORE_MESSAGE_RECALL in one function: the checks in SQLite's order,
 * then the message emptied and marked, the notice posted (1:1: the
 * conversation's counter row locked, both conversation rows moved,
 * nothing unread; a group: chatd_group_lock and chatd_group_post, as a
 * group change), and the recipient's count of a 1:1 message it had not
 * read lowered. A message recalled already is answered with its notice
 * (found again) and the peer or the member ids, so the caller pushes the
 * notice again. Rows: an error's (status, code, text), or the message
 * (and the notice) as the user sees them, with the 1:1 peer or the
 * group's member ids. Installed by migration 8 and again by 9. */
#define RECALL_FN                                                                                  \
    "CREATE OR REPLACE FUNCTION chatd_recall(p_user bigint, p_msg bigint, p_time bigint,"          \
    "  p_window bigint) RETURNS TABLE(o_status int, o_code text, o_text text, o_peer bigint,"      \
    "  o_members json, o_id bigint, o_seq bigint, o_to bigint, o_from bigint, o_username text,"    \
    "  o_userpic text, o_type text, o_data text, o_time bigint, o_cmid text, o_hi bigint,"         \
    "  o_recalled boolean, o_width bigint, o_height bigint, o_deleted boolean)"                    \
    "  LANGUAGE plpgsql AS $$\n"                                                                   \
    "DECLARE\n"                                                                                    \
    "  v record; gm record; v_sees boolean; v_current boolean := true;"                            \
    "  v_dissolved boolean := false; v_code text; v_text text; v_st int;"                          \
    "  v_notice bigint; v_seq bigint; v_members json; v_lock record;\n"                            \
    "BEGIN\n"                                                                                      \
    "  SELECT m.from_id, m.to_id, m.conv_lo, m.conv_hi, m.type, m.time, m.recalled, m.seq"         \
    "    INTO v FROM messages m WHERE m.id = p_msg FOR UPDATE;\n"                                  \
    "  IF NOT FOUND THEN\n"                                                                        \
    "    v_sees := false;\n"                                                                       \
    "  ELSIF v.conv_lo <> 0 THEN\n"                                                                \
    "    v_sees := v.from_id = p_user OR v.to_id = p_user;\n"                                      \
    "  ELSE\n"                                                                                     \
    "    SELECT x.joined_seq, x.left_seq INTO gm FROM group_members x"                             \
    "      WHERE x.group_id = v.conv_hi AND x.user_id = p_user;\n"                                 \
    "    v_sees := FOUND AND v.seq >= gm.joined_seq AND (gm.left_seq = 0 OR v.seq <= "             \
    "gm.left_seq);\n"                                                                              \
    "    v_current := FOUND AND gm.left_seq = 0;\n"                                                \
    "    v_dissolved := coalesce((SELECT g.dissolved FROM groups g WHERE g.id = v.conv_hi), "      \
    "false);\n"                                                                                    \
    "  END IF;\n"                                                                                  \
    "  IF NOT v_sees THEN\n"                                                                       \
    "    v_st := 1; v_code := 'not_found'; v_text := 'No such message.';\n"                        \
    "  ELSIF v.from_id <> p_user THEN\n"                                                           \
    "    v_st := 3; v_code := 'forbidden'; v_text := 'Only its sender may recall a message.';\n"   \
    "  ELSIF v.type IN ('system', 'recall') THEN\n"                                                \
    "    v_st := 3; v_code := 'forbidden';\n"                                                      \
    "    v_text := 'System messages and recall notices cannot be recalled.';\n"                    \
    "  ELSIF NOT v_current THEN\n"                                                                 \
    "    v_st := 3; v_code := 'not_member'; v_text := 'You are not a member of this group.';\n"    \
    "  ELSIF v.recalled THEN\n"                                                                    \
    "    v_st := 0;\n"                                                                             \
    "  ELSIF v_dissolved THEN\n"                                                                   \
    "    v_st := 2; v_code := 'group_dissolved'; v_text := 'The group was dissolved.';\n"          \
    "  ELSIF p_time > v.time + p_window THEN\n"                                                    \
    "    v_st := 2; v_code := 'recall_window_passed';\n"                                           \
    "    v_text := 'The time to recall this message has passed.';\n"                               \
    "  ELSE\n"                                                                                     \
    "    v_st := 0;\n"                                                                             \
    "  END IF;\n"                                                                                  \
    "  IF v_st <> 0 THEN\n"                                                                        \
    "    RETURN QUERY SELECT v_st, v_code, v_text, NULL::bigint, NULL::json, " RECALL_COLS "\n"    \
    "      FROM (SELECT 1) z LEFT JOIN messages m ON false LEFT JOIN users u ON false;\n"          \
    "    RETURN;\n"                                                                                \
    "  END IF;\n"                                                                                  \
    "  IF NOT v.recalled THEN\n"                                                                   \
    "    IF v.conv_lo = 0 THEN\n"                                                                  \
    "      SELECT * INTO v_lock FROM chatd_group_lock(v.conv_hi, p_user);\n"                       \
    "      IF v_lock.o_status <> 0 THEN\n"                                                         \
    "        RETURN QUERY SELECT v_lock.o_status, v_lock.o_result->>'code',"                       \
    "          v_lock.o_result->>'message', NULL::bigint, NULL::json, " RECALL_COLS "\n"           \
    "          FROM (SELECT 1) z LEFT JOIN messages m ON false LEFT JOIN users u ON false;\n"      \
    "        RETURN;\n"                                                                            \
    "      END IF;\n"                                                                              \
    "    END IF;\n"                                                                                \
    "    UPDATE messages m SET recalled = true, data = '', width = NULL, height = NULL"            \
    "      WHERE m.id = p_msg;\n"                                                                  \
    "    IF v.conv_lo = 0 THEN\n"                                                                  \
    "      SELECT x.o_id INTO v_notice FROM chatd_group_post(v.conv_hi, p_user, 'recall',"         \
    "        '{\"message_id\":' || p_msg || '}', p_time, NULL) x;\n"                               \
    "      v_members := chatd_group_member_ids(v.conv_hi, 0);\n"                                   \
    "    ELSE\n"                                                                                   \
    "      SELECT t.last_seq + 1 INTO v_seq FROM threads t WHERE t.conv_lo = v.conv_lo"            \
    "        AND t.conv_hi = v.conv_hi FOR UPDATE;\n"                                              \
    "      v_notice := nextval('messages_id_seq');\n"                                              \
    "      INSERT INTO messages(id, seq, from_id, to_id, conv_lo, conv_hi, type, data, time)"      \
    "        VALUES (v_notice, v_seq, p_user, v.to_id, v.conv_lo, v.conv_hi, 'recall',"            \
    "        '{\"message_id\":' || p_msg || '}', p_time);\n"                                       \
    "      UPDATE threads t SET last_seq = v_seq WHERE t.conv_lo = v.conv_lo"                      \
    "        AND t.conv_hi = v.conv_hi;\n"                                                         \
    "      INSERT INTO conversations AS c (user_id, peer_id, last_message_id)"                     \
    "        SELECT z.u, z.p, v_notice FROM (VALUES (p_user, v.to_id), (v.to_id, p_user)) z(u, "   \
    "p)"                                                                                           \
    "        ORDER BY 1, 2"                                                                        \
    "        ON CONFLICT (user_id, peer_id) DO UPDATE SET"                                         \
    "        last_message_id = greatest(c.last_message_id, excluded.last_message_id);\n"           \
    "      UPDATE conversations c SET unread = c.unread - 1 WHERE c.user_id = v.to_id"             \
    "        AND c.peer_id = p_user AND c.last_read_id < p_msg AND c.unread > 0;\n"                \
    "    END IF;\n"                                                                                \
    "  ELSE\n"                                                                                     \
    "    SELECT n.id INTO v_notice FROM messages n WHERE n.conv_lo = v.conv_lo"                    \
    "      AND n.conv_hi = v.conv_hi AND n.seq > v.seq AND n.type = 'recall'"                      \
    "      AND n.data = '{\"message_id\":' || p_msg || '}' ORDER BY n.seq LIMIT 1;\n"              \
    "    IF v_notice IS NOT NULL AND v.conv_lo = 0 THEN\n"                                         \
    "      v_members := chatd_group_member_ids(v.conv_hi, 0);\n"                                   \
    "    END IF;\n"                                                                                \
    "  END IF;\n"                                                                                  \
    "  RETURN QUERY SELECT 0, NULL::text, NULL::text,"                                             \
    "    CASE WHEN v.conv_lo = 0 THEN NULL ELSE v.to_id END, v_members, " RECALL_COLS "\n"         \
    "    FROM messages m JOIN users u ON u.id = m.from_id WHERE m.id IN (p_msg, v_notice)"         \
    "    ORDER BY m.id;\n"                                                                         \
    "END $$;"

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
    "           (fu.id IS NOT NULL AND EXISTS (SELECT 1 FROM users tu WHERE tu.id = x.r)) AS "
    "ok\n"
    "      FROM unnest(p_from, p_to, p_type, p_data, p_time, p_cmid) WITH ORDINALITY\n"
    "           AS x(f, r, ty, da, ti, cm, ord)\n"
    "      LEFT JOIN users fu ON fu.id = x.f),\n"
    "  b AS (\n"
    "    SELECT b0.*, m.id AS old_id, m.seq AS old_seq, m.to_id AS old_to,\n"
    "           m.type AS old_type, m.data AS old_data, m.time AS old_time,\n"
    "           CASE WHEN b0.cm IS NULL OR NOT b0.ok THEN 1 ELSE\n"
    "             row_number() OVER (PARTITION BY b0.f, b0.cm, b0.ok ORDER BY b0.ord) END AS "
    "rnk\n"
    "      FROM b0 LEFT JOIN messages m ON b0.ok AND b0.cm IS NOT NULL\n"
    "           AND m.from_id = b0.f AND m.client_msg_id = b0.cm),\n"
    "  fresh AS (\n"
    "    SELECT b.ord, b.f, b.r, b.ty, b.da, b.ti, b.cm, b.lo, b.hi, b.fname, b.fpic,\n"
    "           t.last_seq + row_number() OVER (PARTITION BY b.lo, b.hi ORDER BY b.ord) AS "
    "seq\n"
    "      FROM b JOIN threads t ON t.conv_lo = b.lo AND t.conv_hi = b.hi\n"
    "     WHERE b.ok AND b.rnk = 1 AND b.old_id IS NULL),\n"
    "  ids AS (\n"
    "    SELECT s.*, nextval('messages_id_seq') AS id FROM (SELECT * FROM fresh ORDER BY ord) "
    "s),\n"
    "  ins AS (\n"
    "    INSERT INTO messages(id, seq, from_id, to_id, conv_lo, conv_hi, type, data, time,\n"
    "      client_msg_id) SELECT id, seq, f, r, lo, hi, ty, da, ti, cm FROM ids),\n"
    "  thr AS (\n"
    "    UPDATE threads t SET last_seq = t.last_seq + c.n\n"
    "      FROM (SELECT lo, hi, count(*) AS n FROM ids GROUP BY lo, hi) c\n"
    "     WHERE t.conv_lo = c.lo AND t.conv_hi = c.hi),\n"
    "  cv AS (\n"
    "    INSERT INTO conversations AS c (user_id, peer_id, last_message_id, unread, "
    "last_in_id)\n"
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
    "      SELECT i.id, i.seq, i.r AS to_id, i.ty AS type, i.da AS data, i.ti AS time FROM ids "
    "i\n"
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
    /* STORE_USER_EXTERNAL (see store_sqlite_user.c's sq_op_user_external for the
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
    "  p_type text[], p_data text[], p_time bigint[], p_cmid text[]) RETURNS TABLE(o_ord "
    "bigint,"
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
    "           (fu.id IS NOT NULL AND EXISTS (SELECT 1 FROM users tu WHERE tu.id = x.r)) AS "
    "ok\n"
    "      FROM unnest(p_from, p_to, p_type, p_data, p_time, p_cmid) WITH ORDINALITY\n"
    "           AS x(f, r, ty, da, ti, cm, ord)\n"
    "      LEFT JOIN users fu ON fu.id = x.f),\n"
    /* fresh: not stored already, not an earlier send's of this pass */
    "  c AS (\n"
    "    SELECT b.*, (b.ok AND m.id IS NULL AND (b.cm IS NULL OR\n"
    "             row_number() OVER (PARTITION BY b.f, b.cm, b.ok ORDER BY b.ord) = 1)) AS "
    "fresh\n"
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
    "    INSERT INTO conversations AS c (user_id, peer_id, last_message_id, unread, "
    "last_in_id)\n"
    "      SELECT z.u, z.p, max(z.id), sum(z.unr), max(z.inid) FROM (\n"
    "        SELECT i.f AS u, i.r AS p, i.id, 0 AS unr, 0::bigint AS inid FROM ids i\n"
    "         WHERE i.fresh\n"
    "        UNION ALL SELECT i.r, i.f, i.id, 1, i.id FROM ids i WHERE i.fresh) z\n"
    "      GROUP BY z.u, z.p ORDER BY z.u, z.p\n"
    "    ON CONFLICT (user_id, peer_id) DO UPDATE SET\n"
    "      last_message_id = greatest(c.last_message_id, excluded.last_message_id),\n"
    "      unread = c.unread + excluded.unread,\n"
    "      last_in_id = greatest(c.last_in_id, excluded.last_in_id))\n"
    "  SELECT array_agg(CASE WHEN i.fresh THEN i.id WHEN i.ok THEN 0 ELSE -1 END ORDER BY "
    "i.ord),\n"
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
    "    LEFT JOIN LATERAL (SELECT m.id, m.seq, m.to_id, m.type, m.data, m.time FROM messages "
    "m\n"
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
    "CREATE OR REPLACE FUNCTION chatd_role_name(r smallint) RETURNS text LANGUAGE sql "
    "IMMUTABLE AS"
    "  $$SELECT CASE r WHEN 2 THEN 'owner' WHEN 1 THEN 'admin' ELSE 'member' END$$;"
    /* The newest seq a member may see, and its unread count. */
    "CREATE OR REPLACE FUNCTION chatd_group_top(p_last bigint, p_left bigint) RETURNS bigint "
    "LANGUAGE sql"
    "  IMMUTABLE AS $$SELECT CASE WHEN p_left > 0 THEN least(p_left, p_last) ELSE p_last END$$;"
    "CREATE OR REPLACE FUNCTION chatd_group_unread(p_last bigint, p_left bigint, p_read bigint,"
    "  p_joined bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS"
    "  $$SELECT greatest(0, chatd_group_top(p_last, p_left) - greatest(p_read, p_joined - "
    "1))$$;"
    /* The user's unread total: 1:1 conversations and the groups not muted. */
    "CREATE OR REPLACE FUNCTION chatd_unread_total(p_user bigint) RETURNS bigint LANGUAGE sql "
    "STABLE AS $$"
    "  SELECT (coalesce((SELECT sum(c.unread) FROM conversations c WHERE c.user_id = p_user), "
    "0)"
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
    "CREATE OR REPLACE FUNCTION chatd_group_err(p_code text, p_msg text) RETURNS json LANGUAGE "
    "sql"
    "  IMMUTABLE AS $$SELECT json_build_object('code', p_code, 'message', p_msg)$$;"
    /* The group object of store.h. */
    "CREATE OR REPLACE FUNCTION chatd_group_json(p_gid bigint) RETURNS json LANGUAGE sql "
    "STABLE AS "
    "$$"
    "  SELECT json_build_object('group_id', g.id, 'name', g.name, 'avatar', g.avatar,"
    "    'owner_id', g.owner_id, 'created_at', g.created_at, 'member_count', g.member_count,"
    "    'dissolved', g.dissolved, 'last_seq', t.last_seq)"
    "  FROM groups g JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = g.id WHERE g.id = p_gid$$;"
    /* The current members' ids by id, then p_extra (one who just left
     * or was removed) when > 0, as SQLite answers. */
    "CREATE OR REPLACE FUNCTION chatd_group_member_ids(p_gid bigint, p_extra bigint) RETURNS "
    "json"
    "  LANGUAGE sql STABLE AS $$"
    "  SELECT coalesce(json_agg(x.id ORDER BY x.k, x.id), '[]'::json) FROM ("
    "    SELECT m.user_id AS id, 0 AS k FROM group_members m WHERE m.group_id = p_gid"
    "      AND m.left_seq = 0 UNION ALL SELECT p_extra, 1 WHERE p_extra > 0) x"
    "$$;"
    /* A stored message (store.h): a group's with group_id, a 1:1 one with
     * to_id (a group send's client_msg_id may name either). */
    "CREATE OR REPLACE FUNCTION chatd_msg_json(p_id bigint) RETURNS json LANGUAGE sql STABLE "
    "AS $$"
    "  SELECT CASE WHEN m.conv_lo = 0 THEN json_build_object('id', m.id, 'seq', m.seq,"
    "    'group_id', m.conv_hi, 'from_id', m.from_id, 'from_username', u.username,"
    "    'from_userpic', u.userpic, 'type', m.type, 'data', m.data, 'time', m.time,"
    "    'client_msg_id', m.client_msg_id)"
    "  ELSE json_build_object('id', m.id, 'seq', m.seq, 'to_id', m.to_id, 'from_id', m.from_id,"
    "    'from_username', u.username, 'from_userpic', u.userpic, 'type', m.type, 'data', "
    "m.data,"
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
    "CREATE OR REPLACE FUNCTION chatd_group_sysdata(p_event text, p_actor bigint, p_users "
    "bigint[],"
    "  p_name text, p_avatar text, p_role text, p_owner bigint) RETURNS text LANGUAGE sql "
    "STABLE"
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
    "CREATE OR REPLACE FUNCTION chatd_group_post(p_gid bigint, p_from bigint, p_type text, "
    "p_data "
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
    "CREATE OR REPLACE FUNCTION chatd_group_add(p_actor bigint, p_gid bigint, p_members "
    "bigint[],"
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
    "    UPDATE group_members m SET role = 2 WHERE m.group_id = p_gid AND m.user_id = "
    "v_owner;\n"
    "    UPDATE groups g SET owner_id = v_owner WHERE g.id = p_gid;\n"
    "  END IF;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_user, 'system',"
    "    chatd_group_sysdata('leave', p_user, ARRAY[p_user], NULL, NULL, NULL, v_owner), "
    "p_time,"
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
    "  UPDATE groups g SET name = coalesce(v_name, g.name), avatar = coalesce(v_avatar, "
    "g.avatar)"
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
    "  UPDATE group_members m SET role = p_role WHERE m.group_id = p_gid AND m.user_id = "
    "p_peer;\n"
    "  IF p_role = 2 THEN\n"
    "    UPDATE group_members m SET role = 1 WHERE m.group_id = p_gid AND m.user_id = "
    "p_actor;\n"
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
    "CREATE OR REPLACE FUNCTION chatd_group_dissolve(p_actor bigint, p_gid bigint, p_time "
    "bigint,"
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
    "    chatd_group_sysdata('dissolve', p_actor, '{}', NULL, NULL, NULL, NULL), p_time, "
    "NULL);\n"
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
    "  p_type text[], p_data text[], p_cmid text[], p_time bigint[]) RETURNS TABLE(o_ord "
    "bigint,"
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
    "           coalesce(gm.left_seq = 0, false) AS mok, coalesce(gr.dissolved, false) AS "
    "diss\n"
    "      FROM unnest(p_from, p_gid, p_type, p_data, p_cmid, p_time) WITH ORDINALITY\n"
    "           AS x(f, g, ty, da, cm, ti, ord)\n"
    "      LEFT JOIN groups gr ON gr.id = x.g\n"
    "      LEFT JOIN group_members gm ON gm.group_id = x.g AND gm.user_id = x.f),\n"
    "  c AS (\n"
    "    SELECT b.*, b.gok AND b.mok AND NOT b.diss AS ok FROM b),\n"
    "  d AS (\n"
    "    SELECT c.*, (c.ok AND m.id IS NULL AND (c.cm IS NULL OR\n"
    "             row_number() OVER (PARTITION BY c.f, c.cm, c.ok ORDER BY c.ord) = 1)) AS "
    "fresh\n"
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
    "      FROM (SELECT g, max(id) AS mx FROM ids WHERE fresh GROUP BY 1) c WHERE gr.id = "
    "c.g),\n"
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
    "           WHEN -3 THEN chatd_group_err('not_member', 'You are not a member of this "
    "group.')\n"
    "           WHEN -2 THEN chatd_group_err('group_dissolved', 'The group was dissolved.')\n"
    "           WHEN 0 THEN (SELECT chatd_msg_json(m.id) FROM messages m\n"
    "             WHERE m.from_id = x.f AND m.client_msg_id = x.cm) END,\n"
    "         CASE WHEN v_id[x.ord::int] >= 0 AND row_number() OVER (PARTITION BY x.g,\n"
    "           v_id[x.ord::int] >= 0 ORDER BY x.ord) = 1 THEN chatd_group_member_ids(x.g, 0) "
    "END\n"
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
    "    FROM groups g JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = g.id WHERE g.id = "
    "p_gid;\n"
    "END $$;",
    /* 6: what a departed member sees (store.h "Groups"; as SQLite's
     * migration 8): the group as of its leaving. A remove or leave copies
     * the group's name, avatar, member_count, owner_id and dissolved, as
     * they are after its message, into the member's row
     * (chatd_group_keep_left); they are NULL while the user is a member (a
     * re-add clears them) and in the rows of members who left before this
     * migration, which are answered the group's current values instead
     * (their last_seq is capped at left_seq all the same). The functions
     * that change are replaced whole. Idempotent, as migration 5. */
    "ALTER TABLE group_members ADD COLUMN IF NOT EXISTS left_name text,"
    "  ADD COLUMN IF NOT EXISTS left_avatar text,"
    "  ADD COLUMN IF NOT EXISTS left_member_count int,"
    "  ADD COLUMN IF NOT EXISTS left_owner_id bigint,"
    "  ADD COLUMN IF NOT EXISTS left_dissolved boolean;"
    "CREATE OR REPLACE FUNCTION chatd_group_keep_left(p_gid bigint, p_user bigint) RETURNS void"
    "  LANGUAGE sql AS $$"
    "  UPDATE group_members m SET left_name = g.name, left_avatar = g.avatar,"
    "    left_member_count = g.member_count, left_owner_id = g.owner_id,"
    "    left_dissolved = g.dissolved FROM groups g"
    "  WHERE g.id = p_gid AND m.group_id = p_gid AND m.user_id = p_user"
    "$$;"
    /* STORE_GROUP_ADD: a re-added member loses its snapshot. */
    "CREATE OR REPLACE FUNCTION chatd_group_add(p_actor bigint, p_gid bigint, p_members "
    "bigint[],"
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
    "      ord = excluded.ord, left_name = NULL, left_avatar = NULL, left_member_count = NULL,"
    "      left_owner_id = NULL, left_dissolved = NULL;\n"
    "  UPDATE groups g SET member_count = g.member_count + cardinality(v_new)"
    "    WHERE g.id = p_gid;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, 0), 'message', chatd_msg_json(p.o_id), 'added',"
    "    to_json(v_new));\n"
    "END $$;"
    /* STORE_GROUP_REMOVE: the removed member keeps the group as it is now. */
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
    "  PERFORM chatd_group_keep_left(p_gid, p_peer);\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, p_peer), 'message', chatd_msg_json(p.o_id));\n"
    "END $$;"
    /* STORE_GROUP_LEAVE: the owner's successor is the earliest-joined
     * admin, else the earliest-joined member; the last member ends the
     * group. The leaver keeps the group as it is then (its successor
     * named, dissolved when it was the last). */
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
    "    UPDATE group_members m SET role = 2 WHERE m.group_id = p_gid AND m.user_id = "
    "v_owner;\n"
    "    UPDATE groups g SET owner_id = v_owner WHERE g.id = p_gid;\n"
    "  END IF;\n"
    "  SELECT * INTO p FROM chatd_group_post(p_gid, p_user, 'system',"
    "    chatd_group_sysdata('leave', p_user, ARRAY[p_user], NULL, NULL, NULL, v_owner), "
    "p_time,"
    "    NULL);\n"
    "  UPDATE group_members m SET left_seq = p.o_seq WHERE m.group_id = p_gid"
    "    AND m.user_id = p_user;\n"
    "  UPDATE groups g SET member_count = g.member_count - 1, dissolved = g.dissolved OR v_last"
    "    WHERE g.id = p_gid;\n"
    "  PERFORM chatd_group_keep_left(p_gid, p_user);\n"
    "  o_status := 0;\n"
    "  o_result := json_build_object('group', chatd_group_json(p_gid), 'members',"
    "    chatd_group_member_ids(p_gid, p_user), 'message', chatd_msg_json(p.o_id), 'dissolved',"
    "    v_last);\n"
    "END $$;"
    /* STORE_GROUP_INFO (a read): a departed member gets the group as it
     * left it, last_seq its left_seq. */
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
    "  SELECT json_build_object('group_id', g.id, 'name', coalesce(v.left_name, g.name),"
    "    'avatar', coalesce(v.left_avatar, g.avatar), 'owner_id',"
    "    coalesce(v.left_owner_id, g.owner_id), 'created_at', g.created_at, 'member_count',"
    "    coalesce(v.left_member_count, g.member_count), 'dissolved',"
    "    coalesce(v.left_dissolved, g.dissolved), 'last_seq',"
    "    chatd_group_top(t.last_seq, v.left_seq), 'role', chatd_role_name(v.role),"
    "    'muted', v.muted, 'joined_seq', v.joined_seq, 'left', v.left_seq <> 0, 'members',"
    "    CASE WHEN v.left_seq <> 0 THEN '[]'::json ELSE (SELECT coalesce(json_agg("
    "      json_build_object('userid', u.id, 'username', u.username, 'userpic', u.userpic,"
    "      'last_seen', CASE WHEN u.last_seen > 0 AND NOT u.hide_last_seen THEN u.last_seen"
    "      END, 'role', chatd_role_name(x.role)) ORDER BY x.joined_seq, x.ord),"
    "      '[]'::json) FROM group_members x JOIN users u ON u.id = x.user_id"
    "      WHERE x.group_id = g.id AND x.left_seq = 0) END) INTO o_result"
    "    FROM groups g JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = g.id WHERE g.id = "
    "p_gid;\n"
    "END $$;",
    /* 7: STORE_USER_PASSWORD. The new hash, then every login token of the
     * user but p_keep (the caller's) deleted. A function, not one
     * statement: its DELETE runs after the UPDATE took the user's row
     * lock, with a snapshot of its own, so it also deletes a token that a
     * login holding the row FOR SHARE (STORE_TOKEN_CREATE) committed while
     * the UPDATE waited; a login that comes later finds the hash changed
     * and makes no token. OR REPLACE: a replay over a schema that kept
     * its functions (test_admin_migration) must not fail. */
    "CREATE OR REPLACE FUNCTION chatd_user_password(p_user bigint, p_hash text, p_keep bytea,"
    "  p_time bigint, OUT o_found boolean, OUT o_deleted bigint) LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  UPDATE users u SET password_hash = p_hash WHERE u.id = p_user"
    "    AND u.password_hash IS NOT NULL AND EXISTS (SELECT 1 FROM tokens t"
    "    WHERE t.hash = p_keep AND t.user_id = p_user AND t.expires_at > p_time);\n"
    "  o_found := FOUND;\n"
    "  o_deleted := 0;\n"
    "  IF o_found THEN\n"
    "    DELETE FROM tokens t WHERE t.user_id = p_user AND t.hash <> p_keep;\n"
    "    GET DIAGNOSTICS o_deleted = ROW_COUNT;\n"
    "  END IF;\n"
    "END $$;",
    /* 8: recall, delete-for-me and image sizes (as SQLite's migration 9;
     * store.h STORE_MESSAGE_RECALL, STORE_MESSAGE_DELETE). IF NOT EXISTS
     * and OR REPLACE: a replay over a schema that kept them must not fail. */
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS recalled boolean NOT NULL DEFAULT false;"
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS width bigint;"
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS height bigint;"
    /* The ADD COLUMNs change the catalog only (no table rewrite: a
     * constant default), so the ACCESS EXCLUSIVE lock they take on
     * messages and users lasts milliseconds whatever the size. The index
     * messages_uncounted, which needs a full scan, is not built here (it
     * was, before: the lock then lasted the whole scan and blocked every
     * node's reads): pg_migrate builds it CONCURRENTLY after the
     * migrations (uncounted_index). */
    "ALTER TABLE users ADD COLUMN IF NOT EXISTS hide_cursor bigint NOT NULL DEFAULT 0;"
    "CREATE TABLE IF NOT EXISTS hidden_messages("
    "  user_id bigint NOT NULL,"
    "  message_id bigint NOT NULL,"
    "  cursor bigint NOT NULL,"
    "  PRIMARY KEY(user_id, message_id));"
    "CREATE UNIQUE INDEX IF NOT EXISTS hidden_messages_cursor ON hidden_messages(user_id, "
    "cursor);"
    /* A member's unread count less the recalled messages and recall
     * notices in its unread range (a few entries of messages_uncounted). */
    "CREATE OR REPLACE FUNCTION chatd_group_unread2(p_gid bigint, p_last bigint, p_left bigint,"
    "  p_read bigint, p_joined bigint) RETURNS bigint LANGUAGE sql STABLE AS $$"
    "  SELECT CASE WHEN x.n = 0 THEN 0 ELSE greatest(0, x.n - (SELECT count(*) FROM messages m"
    "    WHERE m.conv_lo = 0 AND m.conv_hi = p_gid AND m.seq > x.top - x.n AND m.seq <= x.top"
    "    AND (m.recalled OR m.type = 'recall'))) END"
    "  FROM (SELECT chatd_group_unread(p_last, p_left, p_read, p_joined) AS n,"
    "    chatd_group_top(p_last, p_left) AS top) x$$;"
    "CREATE OR REPLACE FUNCTION chatd_unread_total(p_user bigint) RETURNS bigint LANGUAGE sql "
    "STABLE AS $$"
    "  SELECT (coalesce((SELECT sum(c.unread) FROM conversations c WHERE c.user_id = p_user), "
    "0)"
    "    + coalesce((SELECT sum(chatd_group_unread2(m.group_id, t.last_seq, m.left_seq,"
    "      m.read_seq, m.joined_seq)) FROM group_members m JOIN threads t ON t.conv_lo = 0"
    "      AND t.conv_hi = m.group_id WHERE m.user_id = p_user AND NOT m.muted), 0))::bigint"
    "$$;"
    /* The sends of chatd_send_batch / chatd_group_send_batch with an
     * image's width and height (0: none), written to the new rows. */
    "CREATE OR REPLACE FUNCTION chatd_send_batch_sized(p_from bigint[], p_to bigint[],"
    "  p_type text[], p_data text[], p_time bigint[], p_cmid text[], p_w bigint[], p_h "
    "bigint[])"
    "  RETURNS TABLE(o_ord bigint, o_status int, o_id bigint, o_seq bigint,"
    "  o_from_username text, o_from_userpic text, o_dup boolean, o_to bigint, o_type text,"
    "  o_data text, o_time bigint) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  r record;\n"
    "BEGIN\n"
    "  FOR r IN SELECT * FROM chatd_send_batch(p_from, p_to, p_type, p_data, p_time, p_cmid)"
    "  LOOP\n"
    "    IF r.o_status = 0 AND NOT r.o_dup AND (p_w[r.o_ord::int] > 0 OR p_h[r.o_ord::int] > 0)"
    "    THEN\n"
    "      UPDATE messages m SET width = nullif(p_w[r.o_ord::int], 0),"
    "        height = nullif(p_h[r.o_ord::int], 0) WHERE m.id = r.o_id;\n"
    "    END IF;\n"
    "    o_ord := r.o_ord; o_status := r.o_status; o_id := r.o_id; o_seq := r.o_seq;\n"
    "    o_from_username := r.o_from_username; o_from_userpic := r.o_from_userpic;\n"
    "    o_dup := r.o_dup; o_to := r.o_to; o_type := r.o_type; o_data := r.o_data;\n"
    "    o_time := r.o_time;\n"
    "    RETURN NEXT;\n"
    "  END LOOP;\n"
    "END $$;"
    "CREATE OR REPLACE FUNCTION chatd_group_send_batch_sized(p_from bigint[], p_gid bigint[],"
    "  p_type text[], p_data text[], p_cmid text[], p_time bigint[], p_w bigint[], p_h "
    "bigint[])"
    "  RETURNS TABLE(o_ord bigint, o_status int, o_id bigint, o_seq bigint,"
    "  o_from_username text, o_from_userpic text, o_dup boolean, o_msg json, o_members json)"
    "  LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  r record;\n"
    "BEGIN\n"
    "  FOR r IN SELECT * FROM chatd_group_send_batch(p_from, p_gid, p_type, p_data, p_cmid,"
    "    p_time) LOOP\n"
    "    IF r.o_status = 0 AND NOT r.o_dup AND (p_w[r.o_ord::int] > 0 OR p_h[r.o_ord::int] > 0)"
    "    THEN\n"
    "      UPDATE messages m SET width = nullif(p_w[r.o_ord::int], 0),"
    "        height = nullif(p_h[r.o_ord::int], 0) WHERE m.id = r.o_id;\n"
    "    END IF;\n"
    "    o_ord := r.o_ord; o_status := r.o_status; o_id := r.o_id; o_seq := r.o_seq;\n"
    "    o_from_username := r.o_from_username; o_from_userpic := r.o_from_userpic;\n"
    "    o_dup := r.o_dup; o_msg := r.o_msg; o_members := r.o_members;\n"
    "    RETURN NEXT;\n"
    "  END LOOP;\n"
    "END $$;" RECALL_FN
    /* STORE_MESSAGE_DELETE: the user's row locked (its hide cursor), then
     * each id the user may see hidden with the next cursor value. */
    "CREATE OR REPLACE FUNCTION chatd_hide(p_user bigint, p_ids bigint[], OUT o_status int,"
    "  OUT o_ids bigint[], OUT o_cursor bigint, OUT o_changed boolean) LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  v_start bigint; v_id bigint; n int;\n"
    "BEGIN\n"
    "  SELECT u.hide_cursor INTO v_start FROM users u WHERE u.id = p_user FOR UPDATE;\n"
    "  IF NOT FOUND THEN\n"
    "    o_status := 1;\n"
    "    RETURN;\n"
    "  END IF;\n"
    "  o_status := 0; o_cursor := v_start; o_ids := '{}';\n"
    "  FOREACH v_id IN ARRAY p_ids LOOP\n"
    "    CONTINUE WHEN v_id = ANY(o_ids);\n"
    "    PERFORM 1 FROM messages m LEFT JOIN group_members gm ON m.conv_lo = 0"
    "      AND gm.group_id = m.conv_hi AND gm.user_id = p_user WHERE m.id = v_id"
    "      AND CASE WHEN m.conv_lo = 0 THEN gm.user_id IS NOT NULL AND m.seq >= gm.joined_seq"
    "      AND (gm.left_seq = 0 OR m.seq <= gm.left_seq)"
    "      ELSE m.from_id = p_user OR m.to_id = p_user END;\n"
    "    CONTINUE WHEN NOT FOUND;\n"
    "    o_ids := o_ids || v_id;\n"
    "    INSERT INTO hidden_messages(user_id, message_id, cursor)"
    "      VALUES (p_user, v_id, o_cursor + 1) ON CONFLICT DO NOTHING;\n"
    "    GET DIAGNOSTICS n = ROW_COUNT;\n"
    "    o_cursor := o_cursor + n;\n"
    "  END LOOP;\n"
    "  o_changed := o_cursor <> v_start;\n"
    "  IF o_changed THEN\n"
    "    UPDATE users u SET hide_cursor = o_cursor WHERE u.id = p_user;\n"
    "  END IF;\n"
    "END $$;",
    /* 9: a recall of a message recalled already answers its notice again,
     * so the notice is pushed again (RECALL_FN). */
    RECALL_FN,
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* The one-row, one-column answer of sql (constant text) into out
 * ("" for NULL or no row). 0, or -1 with the error in err. */
static int query_value(PGconn *c, const char *sql, char *out, size_t out_len, char *err,
                       size_t err_len)
{
    PGresult *res = PQsendQuery(c, sql) == 1 ? pg_await_result(c, 0) : NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, err_len, "%s: %s", sql, PQerrorMessage(c));
        PQclear(res);
        return -1;
    }
    snprintf(out, out_len, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return 0;
}

/* The partial index messages_uncounted (only recalled messages and recall
 * notices: rare, and a send writes nothing to it), which migration 8 once
 * built in its transaction. Built here, after the migrations, outside any
 * transaction and CONCURRENTLY: reads and writes on every node go on
 * during the scan. An index left invalid by a failed or interrupted build
 * is dropped and built again; a valid one is kept, so a start with the
 * index in place costs one catalog query. Nothing needs the index to be
 * correct (it makes the group unread counts cheap), so until it exists
 * the counts are right, only slower, and a failed build (a lock_timeout
 * behind a long transaction) is logged, not fatal: the next start tries
 * again. */
static int uncounted_index(PGconn *c, char *err, size_t err_len)
{
    char valid[8];
    if (query_value(c,
                    "SELECT i.indisvalid FROM pg_index i"
                    " WHERE i.indexrelid = to_regclass('messages_uncounted')",
                    valid, sizeof(valid), err, err_len) != 0)
        return -1;
    if (valid[0] == 't')
        return 0;
    if (valid[0] == 'f') {
        log_warn("store: the index messages_uncounted is invalid (an interrupted build): "
                 "building it again");
        if (pg_exec_simple(c, "DROP INDEX CONCURRENTLY IF EXISTS messages_uncounted", 0, err,
                           err_len) != 0)
            return -1;
    }
    if (pg_exec_simple(c,
                       "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_uncounted ON"
                       " messages(conv_lo, conv_hi, seq) WHERE recalled OR type = 'recall'",
                       0, err, err_len) != 0)
        return -1;
    log_info("store: PostgreSQL index messages_uncounted built");
    return 0;
}

/* The migration lock, taken by polling pg_try_advisory_lock instead of
 * waiting in pg_advisory_lock: a node waiting inside a statement holds a
 * snapshot, and CREATE INDEX CONCURRENTLY (uncounted_index) waits for
 * every older snapshot to end, so the node building would wait for the
 * waiting node which waits for its lock (a deadlock PostgreSQL ends by
 * failing one of them). Between polls a waiting node holds nothing. */
static int migration_lock(PGconn *c, char *err, size_t err_len)
{
    char sql[96], got[8];
    snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%lld)", (long long)MIGRATION_LOCK);
    for (int i = 0;; i++) {
        if (query_value(c, sql, got, sizeof(got), err, err_len) != 0)
            return -1;
        if (got[0] == 't')
            return 0;
        if (i == 0)
            log_info("store: another node is migrating the PostgreSQL schema: waiting");
        uv_sleep(100);
    }
}

int pg_migrate(PGconn *c, char *err, size_t err_len)
{
    char lock[96];
    if (migration_lock(c, err, err_len) != 0)
        return -1;
    int ret = -1;
    if (pg_exec_simple(c, "CREATE TABLE IF NOT EXISTS schema_version(version int NOT NULL)", 0, err,
                       err_len) != 0)
        goto out;
    PGresult *res = PQsendQuery(c, "SELECT coalesce(max(version), 0) FROM schema_version") == 1
                        ? pg_await_result(c, 0)
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
        if (pg_exec_simple(c, "BEGIN", 0, err, err_len) != 0)
            goto out;
        if (pg_exec_simple(c, migrations[i], 0, err, err_len) != 0 ||
            pg_exec_simple(c, set, 0, err, err_len) != 0 ||
            pg_exec_simple(c, "COMMIT", 0, err, err_len) != 0) {
            char e[200];
            snprintf(e, sizeof(e), "%s", err);
            snprintf(err, err_len, "migration %d: %s", i + 1, e);
            pg_exec_simple(c, "ROLLBACK", 0, NULL, 0);
            goto out;
        }
        log_info("store: PostgreSQL schema migrated to version %d", i + 1);
    }
    char ierr[256];
    if (uncounted_index(c, ierr, sizeof(ierr)) != 0) /* a speed-up: the next start tries again */
        log_warn("store: building the index messages_uncounted: %s", ierr);
    ret = 0;
out:
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_unlock(%lld)", (long long)MIGRATION_LOCK);
    pg_exec_simple(c, lock, 0, NULL, 0);
    return ret;
}
