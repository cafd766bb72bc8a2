/* store_sqlite: the embedded SQLite backend of store (store_backend.h).
 *
 * One database file, <data_dir>/chatd.db, in WAL mode so a commit appends
 * to one file and needs one fsync (synchronous=FULL) or none until a
 * checkpoint (NORMAL: still safe when chatd is killed, since the OS holds
 * the written pages). The schema is versioned with PRAGMA user_version and
 * brought up to date at open by an ordered list of migrations, all in one
 * transaction so a crash leaves the old version intact.
 *
 * Every statement is prepared once at open and only ever bound with
 * sqlite3_bind_*: no SQL text is built from input, and the hot path does no
 * parsing. A send costs one INSERT in the common case: users come from a
 * cache, and conversation rows are written once per pass (sq_conv_note). A
 * group message is one INSERT too, plus the group's row and the sender's
 * member row: group unread counts are computed from member rows (see
 * migration 7), never counted per member.
 * Each connection is used by one thread at a time (the writer's by the
 * storage thread, the checkpointer's by its own), so both are opened
 * without SQLite's mutexes. Being the only writer is what keeps the user
 * cache exact: one chatd process per data directory.
 *
 * This file opens the database and runs the passes: migrations and
 * connection settings, the statements' SQL, the helpers and caches every
 * operation uses, begin/execute/commit/rollback, the purge and the WAL
 * checkpoints. The operations are in store_sqlite_user.c,
 * store_sqlite_message.c and store_sqlite_group.c (store_sqlite_internal.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include "chat/names.h"
#include "core/log.h"
#include "store/store_sqlite_internal.h"

/* Migration i takes the schema from user_version i to i + 1. Append only:
 * a released migration is never edited, databases in the field ran it. */
static const char *const migrations[] = {
    /* 1: users, login tokens, messages and per-user conversation state. */
    "CREATE TABLE users("
    "  id INTEGER PRIMARY KEY,"
    "  username TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    "  password_hash TEXT,"
    "  userpic TEXT NOT NULL DEFAULT '',"
    "  external_id TEXT UNIQUE,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE tokens("
    "  hash BLOB PRIMARY KEY,"
    "  user_id INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;"
    /* The only indexes on the hot write path, because every index a send
     * touches costs a random page write per commit: dedup by client_msg_id,
     * and history by conversation (conv_lo/conv_hi name it independent of
     * direction). Sync reaches a user's messages through conversations;
     * chat lists are sorted in memory, a user has few conversations. */
    "CREATE TABLE messages("
    "  id INTEGER PRIMARY KEY,"
    "  from_id INTEGER NOT NULL,"
    "  to_id INTEGER NOT NULL,"
    "  conv_lo INTEGER NOT NULL,"
    "  conv_hi INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  data TEXT NOT NULL,"
    "  time INTEGER NOT NULL,"
    "  client_msg_id TEXT);"
    "CREATE UNIQUE INDEX messages_client ON messages(from_id, client_msg_id)"
    "  WHERE client_msg_id IS NOT NULL;"
    "CREATE INDEX messages_conv ON messages(conv_lo, conv_hi, id);"
    /* One row per user and peer, for both sides of every message.
     * last_in_id (newest message from peer to user) makes a read receipt
     * one row lookup instead of a scan through the conversation. */
    "CREATE TABLE conversations("
    "  user_id INTEGER NOT NULL,"
    "  peer_id INTEGER NOT NULL,"
    "  last_message_id INTEGER NOT NULL,"
    "  unread INTEGER NOT NULL DEFAULT 0,"
    "  last_read_id INTEGER NOT NULL DEFAULT 0,"
    "  last_in_id INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(user_id, peer_id)) WITHOUT ROWID;",
    /* 2: logged-out JWTs (SHA-256), kept until their exp. */
    "CREATE TABLE revoked_jwts("
    "  hash BLOB PRIMARY KEY,"
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX revoked_jwts_expiry ON revoked_jwts(expires_at);",
    /* 3: the username key (names.h): skeleton(NFKC_Casefold(username)),
     * unique, so look-alike names cannot both exist and login finds an
     * account by any equivalent spelling. Rows of older versions get their
     * key from C right after the migrations (names_backfill). The NOCASE
     * rule on username stays (dropping it means rebuilding the table); it
     * is weaker than the key, so it refuses nothing the key allows. */
    ("ALTER TABLE users ADD COLUMN name_key TEXT;"
     "CREATE UNIQUE INDEX users_name_key ON users(name_key);"),
    /* 4: seq, a message's position in its conversation (store.h), numbered
     * for existing rows in id order, which is the order they committed in
     * (one writer). The unique index on it replaces messages_conv, so a
     * send still writes one index entry besides messages_client: rowid (the
     * id) is the index's last column, and within a conversation seq and id
     * grow together, so history and the id cursor of sync seek by seq (see
     * ST_HISTORY), and the next seq is the index's last entry. */
    ("ALTER TABLE messages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
     "WITH n AS (SELECT id, row_number() OVER (PARTITION BY conv_lo, conv_hi ORDER BY id) AS seq"
     "  FROM messages)"
     " UPDATE messages SET seq = n.seq FROM n WHERE n.id = messages.id;"
     "CREATE UNIQUE INDEX messages_seq ON messages(conv_lo, conv_hi, seq);"
     "DROP INDEX messages_conv;"),
    /* 5: admin. disabled accounts; tokens_nbf (ms), the last revoke: JWTs
     * issued before it are refused (a JWT cannot be deleted). tokens by
     * user (revoke deletes them all) and by expiry (the background purge
     * seeks the oldest instead of scanning). User search is a prefix range
     * on name_key, whose unique index (migration 3, BINARY) serves it. */
    ("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE users ADD COLUMN tokens_nbf INTEGER NOT NULL DEFAULT 0;"
     "CREATE INDEX tokens_user ON tokens(user_id);"
     "CREATE INDEX tokens_expiry ON tokens(expires_at);"),
    /* 6: presence. last_seen (ms, 0 = never), written when the user goes
     * offline; hide_last_seen, the user's choice that others get null
     * instead. A user's peers are conversations(user_id, ...), a seek on its
     * primary key: no index needed. */
    ("ALTER TABLE users ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE users ADD COLUMN hide_last_seen INTEGER NOT NULL DEFAULT 0;"),
    /* 7: groups (store.h, "Groups"). A group message is one row of messages
     * with conv_lo = 0 and conv_hi = the group id (no user has id 0), so the
     * messages_seq index serves its history and sync, and it shares the id
     * sequence and the client_msg_id dedup with 1:1 messages. groups keeps
     * the newest seq and message id, written once per message; a member
     * row keeps the member's seq range (joined_seq .. left_seq, 0 while a
     * member) and read position, from which unread counts are computed: a
     * message writes no row per member. join_order orders the members who
     * joined with the same message (the order they were named in). A
     * user's groups are a seek on group_members_user, a group's members one
     * on the primary key. */
    ("CREATE TABLE groups("
     "  id INTEGER PRIMARY KEY,"
     "  name TEXT NOT NULL,"
     "  avatar TEXT NOT NULL DEFAULT '',"
     "  owner_id INTEGER NOT NULL,"
     "  created_at INTEGER NOT NULL,"
     "  dissolved INTEGER NOT NULL DEFAULT 0,"
     "  last_seq INTEGER NOT NULL DEFAULT 0,"
     "  last_message_id INTEGER NOT NULL DEFAULT 0,"
     "  member_count INTEGER NOT NULL DEFAULT 0);"
     "CREATE TABLE group_members("
     "  group_id INTEGER NOT NULL,"
     "  user_id INTEGER NOT NULL,"
     "  role INTEGER NOT NULL,"
     "  joined_seq INTEGER NOT NULL,"
     "  join_order INTEGER NOT NULL,"
     "  left_seq INTEGER NOT NULL DEFAULT 0,"
     "  read_seq INTEGER NOT NULL DEFAULT 0,"
     "  muted INTEGER NOT NULL DEFAULT 0,"
     "  PRIMARY KEY(group_id, user_id)) WITHOUT ROWID;"
     "CREATE INDEX group_members_user ON group_members(user_id, group_id);"),
    /* 8: what a departed member sees (store.h, "Groups"): the group as of
     * its leaving. A remove or leave copies the group's name, avatar,
     * member_count, owner_id and dissolved, as they are after its message,
     * into the member's row; they are NULL while the user is a member (a
     * re-add clears them, ST_MEMBER_PUT) and in the rows of members who left
     * before this migration, which are answered the group's current values
     * instead (their last_seq is capped at left_seq all the same). */
    ("ALTER TABLE group_members ADD COLUMN left_name TEXT;"
     "ALTER TABLE group_members ADD COLUMN left_avatar TEXT;"
     "ALTER TABLE group_members ADD COLUMN left_member_count INTEGER;"
     "ALTER TABLE group_members ADD COLUMN left_owner_id INTEGER;"
     "ALTER TABLE group_members ADD COLUMN left_dissolved INTEGER;"),
    /* 9: recall, delete-for-me and image sizes (store.h STORE_MESSAGE_RECALL,
     * STORE_MESSAGE_DELETE). A recall empties data and sets recalled; the
     * partial index holds only recalled messages and recall notices, the
     * messages group unread counts leave out (sq_group_unread): recalls are
     * rare, so counting them in a member's unread range reads a few index
     * entries, and a send writes nothing to it. hidden_messages is a user's
     * delete-for-me set, each id with the user's hide cursor of then
     * (users.hide_cursor, only growing): a seek by (user, message) marks
     * a message deleted, one by (user, cursor) answers sync. */
    ("ALTER TABLE messages ADD COLUMN recalled INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE messages ADD COLUMN width INTEGER;"
     "ALTER TABLE messages ADD COLUMN height INTEGER;"
     "CREATE INDEX messages_uncounted ON messages(conv_lo, conv_hi, seq)"
     "  WHERE recalled <> 0 OR type = 'recall';"
     "ALTER TABLE users ADD COLUMN hide_cursor INTEGER NOT NULL DEFAULT 0;"
     "CREATE TABLE hidden_messages("
     "  user_id INTEGER NOT NULL,"
     "  message_id INTEGER NOT NULL,"
     "  cursor INTEGER NOT NULL,"
     "  PRIMARY KEY(user_id, message_id)) WITHOUT ROWID;"
     "CREATE UNIQUE INDEX hidden_messages_cursor ON hidden_messages(user_id, cursor);"),
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SQLITE_SCHEMA_VERSION,
               "STORE_SQLITE_SCHEMA_VERSION must count the migrations");

/* The message columns every message query returns, in sq_msg_json's order;
 * conv_lo 0 marks a group message (conv_hi is the group). */
#define MSG_COLS                                                                                   \
    "m.id, m.to_id, m.from_id, u.username, u.userpic, m.type, m.data, m.time, m.client_msg_id,"    \
    " m.seq, m.conv_lo, m.conv_hi, m.recalled, m.width, m.height"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_READ] = "BEGIN",
    /* Takes the write lock now, so contention shows up here (and waits
     * busy_timeout) rather than as SQLITE_BUSY in the middle of a pass. */
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_INSERT] =
        "INSERT INTO users(username, password_hash, userpic, external_id, created_at, name_key)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_USER_BY_NAME] =
        "SELECT id, username, userpic, password_hash, disabled FROM users WHERE name_key = ?1",
    [ST_USER_BY_ID] = "SELECT id, username, userpic FROM users WHERE id = ?1",
    [ST_USER_BY_EXT] = "SELECT id, username, userpic, disabled, tokens_nbf FROM users"
                       " WHERE external_id = ?1",
    [ST_USER_UPDATE] = "UPDATE users SET username = ?2, userpic = ?3, name_key = ?4 WHERE id = ?1",
    /* A prefix of the username key (names.h) as a range on the key's
     * unique index: ?2 <= name_key < ?3, ?3 being ?2 with its last byte
     * one higher (store_search_bound). The index gives the rows in key order, so
     * the search stops after ?4 rows and sorts nothing; see
     * store_sqlite_search_sql and its EXPLAIN QUERY PLAN test. */
    [ST_USER_SEARCH] = "SELECT id, username, userpic, last_seen, hide_last_seen FROM users"
                       " WHERE name_key >= ?2 AND name_key < ?3 AND id <> ?1 AND disabled = 0"
                       " ORDER BY name_key LIMIT ?4",
    /* no row for a disabled user, nor for a login whose password (?4, when
     * given) a change replaced meanwhile */
    [ST_TOKEN_INSERT] = "INSERT INTO tokens(hash, user_id, expires_at)"
                        " SELECT ?1, id, ?3 FROM users WHERE id = ?2 AND disabled = 0"
                        " AND (?4 IS NULL OR password_hash = ?4)",
    [ST_TOKEN_LOOKUP] = "SELECT u.id, u.username, u.userpic, t.expires_at FROM tokens t"
                        " JOIN users u ON u.id = t.user_id"
                        " WHERE t.hash = ?1 AND t.expires_at > ?2 AND u.disabled = 0",
    [ST_TOKEN_DELETE] = "DELETE FROM tokens WHERE hash = ?1",
    [ST_JWT_REVOKE] = "INSERT INTO revoked_jwts(hash, expires_at) VALUES(?1, ?2)"
                      " ON CONFLICT(hash) DO UPDATE SET expires_at = max(expires_at, ?2)",
    [ST_JWT_PURGE] = "DELETE FROM revoked_jwts WHERE expires_at <= ?1",
    [ST_JWT_REVOKED] = "SELECT 1 FROM revoked_jwts WHERE hash = ?1 AND expires_at > ?2",
    /* The conflict target names the partial index, so only a repeated
     * client_msg_id is skipped; any other constraint failure stays an error. */
    [ST_MSG_INSERT] = "INSERT INTO messages(from_id, to_id, conv_lo, conv_hi, type, data, time,"
                      " client_msg_id, seq, width, height)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                      " ON CONFLICT(from_id, client_msg_id) WHERE client_msg_id IS NOT NULL"
                      " DO NOTHING",
    [ST_MSG_BY_CLIENT] = "SELECT " MSG_COLS " FROM messages m JOIN users u ON u.id = m.from_id"
                         " WHERE m.from_id = ?1 AND m.client_msg_id = ?2",
    /* ?4 is the unread increment (0 for the sender, 1 for the recipient),
     * ?5 the message id when it is incoming for user_id, else 0. */
    [ST_CONV_UPSERT] = "INSERT INTO conversations(user_id, peer_id, last_message_id, unread,"
                       " last_in_id) VALUES(?1, ?2, ?3, ?4, ?5)"
                       " ON CONFLICT(user_id, peer_id) DO UPDATE SET"
                       " last_message_id = max(last_message_id, excluded.last_message_id),"
                       " unread = max(unread + excluded.unread, 0),"
                       " last_in_id = max(last_in_id, excluded.last_in_id)",
    [ST_CHAT_LIST] = "SELECT c.peer_id, u.username, u.userpic, m.type, m.data, m.time, c.unread,"
                     " c.last_message_id, m.seq, u.last_seen, u.hide_last_seen, m.recalled,"
                     " m.width, m.height, m.from_id"
                     " FROM conversations c"
                     " JOIN users u ON u.id = c.peer_id"
                     " JOIN messages m ON m.id = c.last_message_id"
                     " WHERE c.user_id = ?1 ORDER BY c.last_message_id DESC",
    /* The index is ordered by seq, and so by id within the conversation:
     * "id < before" is "seq < the seq of before", found by its rowid when
     * before is a message of this conversation (what clients pass: the
     * oldest message they hold); for any other id, by walking the index
     * down from the newest entry to the first older id (index only, and
     * only as far as the messages newer than before). */
    [ST_HISTORY] = "SELECT " MSG_COLS " FROM messages m JOIN users u ON u.id = m.from_id"
                   " WHERE m.conv_lo = ?1 AND m.conv_hi = ?2 AND m.seq < coalesce("
                   "  (SELECT seq FROM messages WHERE id = ?3 AND conv_lo = ?1 AND conv_hi = ?2),"
                   "  (SELECT seq + 1 FROM messages WHERE conv_lo = ?1 AND conv_hi = ?2"
                   "   AND id < ?3 ORDER BY seq DESC LIMIT 1), 0)"
                   " ORDER BY m.seq DESC LIMIT ?4",
    /* The id cursor: every message to or from the user is in one of the
     * user's conversations; each is cut to the limit on the conversation
     * index first, so the work is bounded by conversations times limit,
     * plus, in a conversation that does not hold the id "after", the walk
     * down the index over its messages newer than after (see ST_HISTORY). */
    [ST_SYNC] =
        "SELECT " MSG_COLS " FROM conversations c"
        " JOIN messages m ON m.id IN (SELECT id FROM messages"
        "  WHERE conv_lo = min(c.user_id, c.peer_id) AND conv_hi = max(c.user_id, c.peer_id)"
        "  AND seq > coalesce((SELECT seq FROM messages WHERE id = ?2"
        "    AND conv_lo = min(c.user_id, c.peer_id) AND conv_hi = max(c.user_id, c.peer_id)),"
        "   (SELECT seq FROM messages"
        "    WHERE conv_lo = min(c.user_id, c.peer_id) AND conv_hi = max(c.user_id, c.peer_id)"
        "    AND id <= ?2 ORDER BY seq DESC LIMIT 1), 0)"
        "  ORDER BY seq LIMIT ?3)"
        " JOIN users u ON u.id = m.from_id"
        " WHERE c.user_id = ?1 AND c.last_message_id > ?2"
        " ORDER BY m.id LIMIT ?3",
    /* The seq cursors: the user's conversations with their newest seq,
     * most recent first; then per conversation the messages after its
     * cursor, a seek on the seq index. */
    [ST_SYNC_CONVS] = "SELECT c.peer_id, m.seq, c.last_message_id FROM conversations c"
                      " JOIN messages m ON m.id = c.last_message_id"
                      " WHERE c.user_id = ?1 ORDER BY c.last_message_id DESC",
    [ST_SYNC_CONV] = "SELECT " MSG_COLS " FROM messages m JOIN users u ON u.id = m.from_id"
                     " WHERE m.conv_lo = ?1 AND m.conv_hi = ?2 AND m.seq > ?3"
                     " ORDER BY m.seq LIMIT ?4",
    /* One seek to the conversation's last index entry. */
    [ST_CONV_LAST_SEQ] = "SELECT seq FROM messages WHERE conv_lo = ?1 AND conv_hi = ?2"
                         " ORDER BY seq DESC LIMIT 1",
    [ST_CONV_GET] = "SELECT last_in_id, unread, last_read_id FROM conversations"
                    " WHERE user_id = ?1 AND peer_id = ?2",
    [ST_CONV_READ] = "UPDATE conversations SET unread = 0, last_read_id = ?3"
                     " WHERE user_id = ?1 AND peer_id = ?2",
    [ST_UNREAD_TOTAL] = "SELECT coalesce(sum(unread), 0) FROM conversations WHERE user_id = ?1",
    [ST_UNREAD_LIST] = "SELECT peer_id, unread FROM conversations WHERE user_id = ?1 AND unread > 0"
                       " ORDER BY last_message_id DESC",
    /* ?3: enum store_admin_action. The not-before time never moves back. */
    [ST_ADMIN_USER] = "UPDATE users SET"
                      " tokens_nbf = CASE WHEN ?3 = 2 THEN tokens_nbf ELSE max(tokens_nbf, ?2) END,"
                      " disabled = CASE ?3 WHEN 1 THEN 1 WHEN 2 THEN 0 ELSE disabled END"
                      " WHERE id = ?1",
    [ST_ADMIN_TOKENS] = "DELETE FROM tokens WHERE user_id = ?1",
    [ST_ADMIN_GET] = "SELECT disabled FROM users WHERE id = ?1",
    /* Seeks the oldest expiries on their index; at most ?2 rows. */
    [ST_PURGE_TOKENS] = "DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens"
                        " WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
    [ST_PURGE_JWTS] = "DELETE FROM revoked_jwts WHERE hash IN (SELECT hash FROM revoked_jwts"
                      " WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
    /* last_seen never moves back (two nodes may write it out of order) */
    [ST_LAST_SEEN] = "UPDATE users SET last_seen = max(last_seen, ?2) WHERE id = ?1",
    [ST_SETTINGS] = "UPDATE users SET hide_last_seen = ?2 WHERE id = ?1",
    /* the user's setting, then one row per peer (NULL when none): its 1:1
     * peers and the current members of its groups that are not dissolved,
     * each once (UNION) */
    [ST_PEERS] = "SELECT u.hide_last_seen, u.last_seen, p.id FROM users u LEFT JOIN ("
                 "  SELECT peer_id AS id FROM conversations WHERE user_id = ?1"
                 "  UNION SELECT o.user_id FROM group_members m"
                 "  JOIN groups g ON g.id = m.group_id AND g.dissolved = 0"
                 "  JOIN group_members o ON o.group_id = m.group_id AND o.left_seq = 0"
                 "  WHERE m.user_id = ?1 AND m.left_seq = 0 AND o.user_id <> ?1) p ON 1"
                 " WHERE u.id = ?1",
    /* a password user whose token ?3 (the caller's) is alive */
    [ST_PASSWORD_SET] = "UPDATE users SET password_hash = ?2 WHERE id = ?1"
                        " AND password_hash IS NOT NULL AND EXISTS (SELECT 1 FROM tokens"
                        " WHERE hash = ?3 AND user_id = ?1 AND expires_at > ?4)",
    [ST_PASSWORD_TOKENS] = "DELETE FROM tokens WHERE user_id = ?1 AND hash <> ?2",
    [ST_PROFILE_SET] = "UPDATE users SET userpic = ?2 WHERE id = ?1",
    /* who may be made a member: an enabled user */
    [ST_USER_ACTIVE] = "SELECT username FROM users WHERE id = ?1 AND disabled = 0",
    [ST_GROUP_INSERT] =
        "INSERT INTO groups(name, avatar, owner_id, created_at) VALUES(?1, ?2, ?3, ?4)",
    [ST_GROUP_GET] = "SELECT name, avatar, owner_id, created_at, member_count, dissolved, last_seq,"
                     " last_message_id FROM groups WHERE id = ?1",
    [ST_GROUP_PUT] = "UPDATE groups SET name = ?2, avatar = ?3, owner_id = ?4, member_count = ?5,"
                     " dissolved = ?6, last_seq = ?7, last_message_id = ?8 WHERE id = ?1",
    [ST_MEMBER_GET] = "SELECT role, joined_seq, join_order, left_seq, read_seq, muted"
                      " FROM group_members WHERE group_id = ?1 AND user_id = ?2",
    [ST_MEMBER_PUT] = "INSERT INTO group_members(group_id, user_id, role, joined_seq, join_order,"
                      " left_seq, read_seq, muted) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                      " ON CONFLICT(group_id, user_id) DO UPDATE SET role = excluded.role,"
                      " joined_seq = excluded.joined_seq, join_order = excluded.join_order,"
                      " left_seq = excluded.left_seq, read_seq = excluded.read_seq,"
                      " muted = excluded.muted,"
                      /* a member again (re-added): the snapshot of its
                       * leaving goes (migration 8) */
                      " left_name = iif(excluded.left_seq = 0, NULL, left_name),"
                      " left_avatar = iif(excluded.left_seq = 0, NULL, left_avatar),"
                      " left_member_count = iif(excluded.left_seq = 0, NULL, left_member_count),"
                      " left_owner_id = iif(excluded.left_seq = 0, NULL, left_owner_id),"
                      " left_dissolved = iif(excluded.left_seq = 0, NULL, left_dissolved)",
    /* the group as the member left it (migration 8), written after its
     * remove or leave */
    [ST_MEMBER_LEFT] = "UPDATE group_members SET left_name = ?3, left_avatar = ?4,"
                       " left_member_count = ?5, left_owner_id = ?6, left_dissolved = ?7"
                       " WHERE group_id = ?1 AND user_id = ?2",
    [ST_MEMBER_LEFT_GET] =
        "SELECT left_name, left_avatar, left_member_count, left_owner_id,"
        " left_dissolved FROM group_members WHERE group_id = ?1 AND user_id = ?2",
    [ST_MEMBER_IDS] = "SELECT user_id FROM group_members WHERE group_id = ?1 AND left_seq = 0",
    /* current members in join order, as others see them */
    [ST_MEMBER_LIST] = "SELECT m.user_id, u.username, u.userpic, u.last_seen, u.hide_last_seen,"
                       " m.role FROM group_members m JOIN users u ON u.id = m.user_id"
                       " WHERE m.group_id = ?1 AND m.left_seq = 0"
                       " ORDER BY m.joined_seq, m.join_order",
    /* the next owner when ?2 (the owner) leaves: the earliest-joined admin,
     * else the earliest-joined member (role 2 is only the leaver's) */
    [ST_SUCCESSOR] = "SELECT user_id FROM group_members WHERE group_id = ?1 AND left_seq = 0"
                     " AND user_id <> ?2 ORDER BY role DESC, joined_seq, join_order LIMIT 1",
    /* the user's groups (a seek on group_members_user) with what unread
     * counts and sync need; the last id the user may see is, once it left,
     * that of its left_seq message (one seek on messages_seq) */
    [ST_USER_GROUPS] = "SELECT g.id, g.last_seq, m.joined_seq, m.left_seq, m.read_seq, m.muted,"
                       " CASE WHEN m.left_seq > 0 THEN (SELECT id FROM messages"
                       "  WHERE conv_lo = 0 AND conv_hi = g.id AND seq = m.left_seq)"
                       "  ELSE g.last_message_id END"
                       " FROM group_members m JOIN groups g ON g.id = m.group_id"
                       " WHERE m.user_id = ?1",
    /* the group items of the chat list, each with the newest message the
     * user may see; every group has one (its "create" message). A departed
     * member sees the group as it left it (migration 8), or, when it left
     * before that migration, as it is now. */
    [ST_GROUP_CHAT_LIST] =
        "SELECT g.id, coalesce(m.left_name, g.name), coalesce(m.left_avatar, g.avatar), x.type,"
        " x.data, x.time, m.joined_seq, m.left_seq, m.read_seq, g.last_seq, x.id, x.seq,"
        " x.from_id, u.username, m.muted, m.role, coalesce(m.left_member_count, g.member_count),"
        " coalesce(m.left_dissolved, g.dissolved), x.recalled, x.width, x.height"
        " FROM group_members m JOIN groups g ON g.id = m.group_id"
        " JOIN messages x ON x.conv_lo = 0 AND x.conv_hi = g.id"
        "  AND x.seq = CASE WHEN m.left_seq > 0 THEN m.left_seq ELSE g.last_seq END"
        " JOIN users u ON u.id = x.from_id"
        " WHERE m.user_id = ?1",
    /* ST_HISTORY within the member's seq range ?4..?5 */
    [ST_GROUP_HISTORY] =
        "SELECT " MSG_COLS " FROM messages m JOIN users u ON u.id = m.from_id"
        " WHERE m.conv_lo = 0 AND m.conv_hi = ?1 AND m.seq >= ?4 AND m.seq <= ?5"
        " AND m.seq < coalesce("
        "  (SELECT seq FROM messages WHERE id = ?2 AND conv_lo = 0 AND conv_hi = ?1),"
        "  (SELECT seq + 1 FROM messages WHERE conv_lo = 0 AND conv_hi = ?1"
        "   AND id < ?2 ORDER BY seq DESC LIMIT 1), 0)"
        " ORDER BY m.seq DESC LIMIT ?3",
    [ST_GROUP_SYNC_CONV] = "SELECT " MSG_COLS " FROM messages m JOIN users u ON u.id = m.from_id"
                           " WHERE m.conv_lo = 0 AND m.conv_hi = ?1 AND m.seq > ?2 AND m.seq <= ?3"
                           " ORDER BY m.seq LIMIT ?4",
    /* ---- recall and delete-for-me (migration 9) ---- */
    [ST_MSG_GET] = "SELECT from_id, to_id, conv_lo, conv_hi, type, time, recalled, seq"
                   " FROM messages WHERE id = ?1",
    [ST_MSG_RECALL] = "UPDATE messages SET recalled = 1, data = '', width = NULL, height = NULL"
                      " WHERE id = ?1",
    [ST_MSG_BY_ID] = "SELECT " MSG_COLS " FROM messages m JOIN users u ON u.id = m.from_id"
                     " WHERE m.id = ?1",
    /* the recipient's count loses a recalled message it had not read */
    [ST_CONV_UNCOUNT] = "UPDATE conversations SET unread = unread - 1"
                        " WHERE user_id = ?1 AND peer_id = ?2 AND last_read_id < ?3 AND unread > 0",
    /* the recall notice of message ?4 (its data), after the message */
    [ST_RECALL_NOTICE] = "SELECT id FROM messages WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq > ?3"
                         " AND type = 'recall' AND data = ?4 ORDER BY seq LIMIT 1",
    /* the partial index messages_uncounted: the same condition */
    [ST_GROUP_UNCOUNTED] = "SELECT count(*) FROM messages WHERE conv_lo = 0 AND conv_hi = ?1"
                           " AND seq > ?2 AND seq <= ?3 AND (recalled <> 0 OR type = 'recall')",
    [ST_HIDDEN_GET] = "SELECT 1 FROM hidden_messages WHERE user_id = ?1 AND message_id = ?2",
    [ST_HIDDEN_INSERT] = "INSERT INTO hidden_messages(user_id, message_id, cursor)"
                         " VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING",
    [ST_HIDE_CURSOR] = "SELECT hide_cursor FROM users WHERE id = ?1",
    [ST_HIDE_CURSOR_SET] = "UPDATE users SET hide_cursor = ?2 WHERE id = ?1",
    [ST_HIDDEN_AFTER] = "SELECT message_id, cursor FROM hidden_messages"
                        " WHERE user_id = ?1 AND cursor > ?2 ORDER BY cursor LIMIT ?3",
};

const char *store_sqlite_search_sql(void)
{
    return stmt_sql[ST_USER_SEARCH];
}

/* WAL checkpoints (copying committed pages from the WAL into the database
 * file, with an fsync of each) are ours, not SQLite's, which would run them
 * inside commits, delaying a pass's answers by the whole copy.
 *
 * A checkpointer thread on its own connection does the copying next to the
 * writer, once the WAL holds WAL_CKPT_BUSY pages (WAL_CKPT_IDLE when the
 * store is idle). But the WAL only starts over when a write transaction
 * begins with every frame copied, which under load, with the next pass
 * beginning right after a commit, never happens by itself. So at
 * WAL_CKPT_RESTART pages the writer, between passes and once the
 * checkpointer is done, runs a RESTART checkpoint itself: it has only the
 * last pass or two left to copy. WAL_CKPT_MAX bounds the WAL should that
 * moment not come. */
#define WAL_CKPT_IDLE 1000
#define WAL_CKPT_BUSY 4096
#define WAL_CKPT_RESTART 16384
#define WAL_CKPT_MAX 65536

/* Logs the connection's last error and answers STORE_ERROR. */
int sq_db_fail(sq *b, const char *what)
{
    log_error("store: %s: %s", what, sqlite3_errmsg(b->db));
    return STORE_ERROR;
}

/* A caller bug, not a database failure; still an error answer, since the
 * store has no "bad request" status. */
int sq_bad_input(store_req *r, const char *what)
{
    log_error("store: request %d without %s", (int)r->op, what);
    return STORE_ERROR;
}

sqlite3_stmt *sq_prep(sq *b, enum stmt_id id)
{
    /* Statements are reset after every use, so one found busy here is a bug. */
    sqlite3_stmt *st = b->st[id];
    sqlite3_reset(st);
    return st;
}

/* Steps a statement that returns no rows and resets it. */
int sq_exec_stmt(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

void sq_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    /* STATIC: the request outlives the statement's use of the value. */
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

const char *sq_col_text(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? t : "";
}

/* limit <= 0 means no limit, which SQLite spells -1. */
int64_t sq_sql_limit(int64_t limit)
{
    return limit > 0 ? limit : -1;
}

/* The last_seen others see: null when the user hides it or was never
 * seen offline (0). */
json_t *sq_last_seen_json(sqlite3_stmt *st, int col)
{
    int64_t t = sqlite3_column_int64(st, col);
    return t > 0 && !sqlite3_column_int(st, col + 1) ? json_integer(t) : json_null();
}

/* A message from the MSG_COLS columns: a group's has group_id instead of
 * to_id. */
json_t *sq_msg_json(sqlite3_stmt *st)
{
    bool group = sqlite3_column_int64(st, 10) == 0;
    json_t *m = json_pack(
        "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
        (json_int_t)sqlite3_column_int64(st, 0), "seq", (json_int_t)sqlite3_column_int64(st, 9),
        group ? "group_id" : "to_id", (json_int_t)sqlite3_column_int64(st, group ? 11 : 1),
        "from_id", (json_int_t)sqlite3_column_int64(st, 2), "from_username", sq_col_text(st, 3),
        "from_userpic", sq_col_text(st, 4), "type", sq_col_text(st, 5), "data", sq_col_text(st, 6),
        "time", (json_int_t)sqlite3_column_int64(st, 7), "client_msg_id",
        (const char *)sqlite3_column_text(st, 8));
    if (store_msg_extras(m, sqlite3_column_int(st, 12) != 0, sqlite3_column_int64(st, 13),
                         sqlite3_column_int64(st, 14)) != 0) {
        json_decref(m);
        return NULL;
    }
    return m;
}

/* Marks, in each of msgs (messages, or chat list items when id_key is
 * "last_message_id"), those user hid: "deleted": true, data "", no size.
 * One seek on hidden_messages' key each, none for a user who never hid a
 * message (hide cursor 0). 0, or -1 (logged). */
int sq_mark_hidden(sq *b, int64_t user, json_t *msgs, const char *id_key)
{
    if (json_array_size(msgs) == 0)
        return 0;
    /* most users never hid anything: one seek on users spares the rest */
    sqlite3_stmt *cur = sq_prep(b, ST_HIDE_CURSOR);
    sqlite3_bind_int64(cur, 1, user);
    int crc = sqlite3_step(cur);
    int64_t hidden = crc == SQLITE_ROW ? sqlite3_column_int64(cur, 0) : 0;
    sqlite3_reset(cur);
    if (crc != SQLITE_ROW && crc != SQLITE_DONE) {
        sq_db_fail(b, "hide cursor");
        return -1;
    }
    if (hidden == 0)
        return 0;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        sqlite3_stmt *st = sq_prep(b, ST_HIDDEN_GET);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_int64(st, 2, json_integer_value(json_object_get(m, id_key)));
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW) {
            if (store_msg_deleted(m) != 0)
                return -1;
        } else if (rc != SQLITE_DONE) {
            sq_db_fail(b, "hidden lookup");
            return -1;
        }
    }
    return 0;
}

/* Runs a query and collects one JSON value per row; NULL on failure. */
json_t *sq_rows_json(sq *b, sqlite3_stmt *st, json_t *(*row)(sqlite3_stmt *))
{
    json_t *arr = json_array();
    int rc = SQLITE_DONE;
    while (arr && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (json_array_append_new(arr, row(st)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr && rc != SQLITE_DONE) {
        sq_db_fail(b, "query");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_reset(st);
    return arr;
}

/* Runs a query expected to return at most one row and turns it into JSON.
 * STORE_NOT_FOUND when there is no row. */
int sq_row_json(sq *b, sqlite3_stmt *st, json_t *(*row)(sqlite3_stmt *), json_t **out)
{
    int rc = sqlite3_step(st);
    int status = STORE_OK;
    if (rc == SQLITE_ROW) {
        *out = row(st);
        if (!*out)
            status = STORE_ERROR;
    } else if (rc == SQLITE_DONE) {
        status = STORE_NOT_FOUND;
    } else {
        status = sq_db_fail(b, "query");
    }
    sqlite3_reset(st);
    return status;
}

bool sq_is_constraint(int rc)
{
    return (rc & 0xff) == SQLITE_CONSTRAINT;
}

void sq_user_forget(sq *b, user_entry *u)
{
    HASH_DEL(b->users, u);
    b->nusers--;
    free(u->username);
    free(u->userpic);
    free(u);
}

static void users_clear(sq *b)
{
    user_entry *u, *tmp;
    HASH_ITER(hh, b->users, u, tmp)
    {
        sq_user_forget(b, u);
    }
}

static void seqs_clear(sq *b)
{
    seq_entry *e, *tmp;
    HASH_ITER(hh, b->seqs, e, tmp)
    {
        HASH_DEL(b->seqs, e);
        free(e);
    }
    b->nseqs = 0;
}

/* The cache entry of conversation (lo, hi), loaded with its newest seq
 * (0 when it has no message yet); NULL on error. */
seq_entry *sq_seq_get(sq *b, int64_t lo, int64_t hi)
{
    conv_key key = {lo, hi};
    seq_entry *e;
    HASH_FIND(hh, b->seqs, &key, sizeof(key), e);
    if (e)
        return e;
    sqlite3_stmt *st = sq_prep(b, ST_CONV_LAST_SEQ);
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int rc = sqlite3_step(st);
    int64_t last = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sq_db_fail(b, "last seq lookup");
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    if (b->nseqs >= SEQ_CACHE_MAX)
        seqs_clear(b);
    e->key = key;
    e->last_seq = last;
    HASH_ADD(hh, b->seqs, key, sizeof(e->key), e);
    b->nseqs++;
    return e;
}

/* The user with that id, from the cache or the database. STORE_NOT_FOUND
 * when there is none. */
int sq_user_get(sq *b, int64_t id, user_entry **out)
{
    HASH_FIND(hh, b->users, &id, sizeof(id), *out);
    if (*out)
        return STORE_OK;
    sqlite3_stmt *st = sq_prep(b, ST_USER_BY_ID);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_db_fail(b, "user lookup");
    }
    user_entry *u = calloc(1, sizeof(*u));
    if (u) {
        u->id = id;
        u->username = strdup(sq_col_text(st, 1));
        u->userpic = strdup(sq_col_text(st, 2));
    }
    sqlite3_reset(st);
    if (!u || !u->username || !u->userpic) {
        if (u) {
            free(u->username);
            free(u->userpic);
        }
        free(u);
        return STORE_ERROR;
    }
    if (b->nusers >= USER_CACHE_MAX)
        users_clear(b);
    HASH_ADD(hh, b->users, id, sizeof(u->id), u);
    b->nusers++;
    *out = u;
    return STORE_OK;
}

/* Writes the pending conversation changes. 0, or -1 when the transaction
 * must not be committed. Either way nothing is pending afterwards. */
static int conv_flush(sq *b)
{
    int ret = 0;
    for (size_t i = 0; i < b->npending && ret == 0; i++) {
        conv_delta *d = &b->pool[i];
        sqlite3_stmt *st = sq_prep(b, ST_CONV_UPSERT);
        sqlite3_bind_int64(st, 1, d->key.user);
        sqlite3_bind_int64(st, 2, d->key.peer);
        sqlite3_bind_int64(st, 3, d->last_message_id);
        sqlite3_bind_int64(st, 4, d->unread);
        sqlite3_bind_int64(st, 5, d->last_in_id);
        if (sq_exec_stmt(st) != SQLITE_DONE)
            ret = sq_db_fail(b, "conversation upsert");
    }
    HASH_CLEAR(hh, b->pending);
    b->npending = 0;
    return ret;
}

static void conv_discard(sq *b)
{
    HASH_CLEAR(hh, b->pending);
    b->npending = 0;
}

/* Records that message msg_id moved user's conversation with peer, adding
 * unread to its count; in_id is msg_id when it came from peer, else 0. */
int sq_conv_note(sq *b, int64_t user, int64_t peer, int64_t msg_id, int64_t unread, int64_t in_id)
{
    conv_key key = {user, peer};
    conv_delta *d;
    HASH_FIND(hh, b->pending, &key, sizeof(key), d);
    if (!d) {
        if (b->npending == CONV_PENDING_MAX && conv_flush(b) != 0)
            return -1;
        d = &b->pool[b->npending++];
        memset(d, 0, sizeof(*d));
        d->key = key;
        HASH_ADD(hh, b->pending, key, sizeof(d->key), d);
    }
    if (msg_id > d->last_message_id)
        d->last_message_id = msg_id;
    if (in_id > d->last_in_id)
        d->last_in_id = in_id;
    d->unread += unread;
    return 0;
}

static void sq_execute(void *p, store_req *r)
{
    sq *b = p;
    /* A write outside a transaction would commit on its own and could be
     * committed again by a retry: refuse it. (SQLite ends a transaction by
     * itself on some I/O errors.) */
    if (store_op_is_write(r->op) && sqlite3_get_autocommit(b->db)) {
        r->status = STORE_ERROR;
        log_error("store: write request outside a transaction");
        return;
    }
    /* Whatever reads conversations must see this transaction's sends
     * (the group reads and mute answer the unread total). */
    if ((r->op == STORE_CHAT_LIST || r->op == STORE_SYNC || r->op == STORE_SYNC_CURSORS ||
         r->op == STORE_MESSAGE_RECALL || r->op == STORE_READ || r->op == STORE_UNREAD ||
         r->op == STORE_PRESENCE_PEERS || r->op == STORE_GROUP_READ || r->op == STORE_GROUP_MUTE) &&
        conv_flush(b) != 0) {
        r->status = STORE_ERROR;
        return;
    }
    switch (r->op) {
    case STORE_USER_CREATE:
        r->status = sq_op_user_create(b, r);
        break;
    case STORE_USER_BY_NAME:
        r->status = sq_op_user_by_name(b, r);
        break;
    case STORE_USER_BY_ID:
        r->status = sq_op_user_by_id(b, r);
        break;
    case STORE_USER_EXTERNAL:
        r->status = sq_op_user_external(b, r);
        break;
    case STORE_USER_SEARCH:
        r->status = sq_op_user_search(b, r);
        break;
    case STORE_TOKEN_CREATE:
        r->status = sq_op_token_create(b, r);
        break;
    case STORE_TOKEN_LOOKUP:
        r->status = sq_op_token_lookup(b, r);
        break;
    case STORE_TOKEN_DELETE:
        r->status = sq_op_token_delete(b, r);
        break;
    case STORE_JWT_REVOKE:
        r->status = sq_op_jwt_revoke(b, r);
        break;
    case STORE_MESSAGE_SEND:
        r->status = sq_op_message_send(b, r);
        break;
    case STORE_CHAT_LIST:
        r->status = sq_op_chat_list(b, r);
        break;
    case STORE_MESSAGE_RECALL:
        r->status = sq_op_message_recall(b, r);
        break;
    case STORE_MESSAGE_DELETE:
        r->status = sq_op_message_delete(b, r);
        break;
    case STORE_HISTORY:
        r->status = sq_op_history(b, r);
        break;
    case STORE_SYNC:
        r->status = sq_op_sync(b, r);
        break;
    case STORE_SYNC_CURSORS:
        r->status = sq_op_sync_cursors(b, r);
        break;
    case STORE_READ:
        r->status = sq_op_read(b, r);
        break;
    case STORE_UNREAD:
        r->status = sq_op_unread(b, r);
        break;
    case STORE_USER_ADMIN:
        r->status = sq_op_user_admin(b, r);
        break;
    case STORE_TOKEN_PURGE:
        r->status = sq_op_token_purge(b, r);
        break;
    case STORE_USER_LAST_SEEN:
        r->status = sq_op_last_seen(b, r);
        break;
    case STORE_USER_SETTINGS:
        r->status = sq_op_user_settings(b, r);
        break;
    case STORE_PRESENCE_PEERS:
        r->status = sq_op_presence_peers(b, r);
        break;
    case STORE_USER_PASSWORD:
        r->status = sq_op_user_password(b, r);
        break;
    case STORE_USER_PROFILE:
        r->status = sq_op_user_profile(b, r);
        break;
    case STORE_GROUP_CREATE:
        r->status = sq_op_group_create(b, r);
        break;
    case STORE_GROUP_INFO:
        r->status = sq_op_group_info(b, r);
        break;
    case STORE_GROUP_ADD:
        r->status = sq_op_group_add(b, r);
        break;
    case STORE_GROUP_REMOVE:
        r->status = sq_op_group_remove(b, r);
        break;
    case STORE_GROUP_LEAVE:
        r->status = sq_op_group_leave(b, r);
        break;
    case STORE_GROUP_UPDATE:
        r->status = sq_op_group_update(b, r);
        break;
    case STORE_GROUP_ROLE:
        r->status = sq_op_group_role(b, r);
        break;
    case STORE_GROUP_DISSOLVE:
        r->status = sq_op_group_dissolve(b, r);
        break;
    case STORE_GROUP_MUTE:
        r->status = sq_op_group_mute(b, r);
        break;
    case STORE_GROUP_SEND:
        r->status = sq_op_group_send(b, r);
        break;
    case STORE_GROUP_HISTORY:
        r->status = sq_op_group_history(b, r);
        break;
    case STORE_GROUP_READ:
        r->status = sq_op_group_read(b, r);
        break;
    default:
        r->status = sq_bad_input(r, "a known op");
        break;
    }
    if (r->status != STORE_OK && r->status != STORE_NOT_FOUND && r->status != STORE_CONFLICT &&
        r->status != STORE_FORBIDDEN)
        r->status = STORE_ERROR;
    if (r->status == STORE_ERROR) {
        /* a database error was logged where it happened; this line also
         * covers the rest (out of memory, a value JSON cannot hold) */
        log_error("store: request %d failed", (int)r->op);
        json_decref(r->result);
        r->result = NULL;
    }
}

static int sq_begin(void *p, bool write)
{
    sq *b = p;
    if (sq_exec_stmt(b->st[write ? ST_BEGIN_WRITE : ST_BEGIN_READ]) != SQLITE_DONE) {
        sq_db_fail(b, "begin");
        return -1;
    }
    return 0;
}

static int sq_commit(void *p)
{
    sq *b = p;
    if (conv_flush(b) != 0)
        return -1;
    if (sq_exec_stmt(b->st[ST_COMMIT]) != SQLITE_DONE) {
        sq_db_fail(b, "commit");
        return -1;
    }
    return 0;
}

static void sq_rollback(void *p)
{
    sq *b = p;
    conv_discard(b);
    users_clear(b);
    seqs_clear(b);
    if (!sqlite3_get_autocommit(b->db) && sq_exec_stmt(b->st[ST_ROLLBACK]) != SQLITE_DONE)
        sq_db_fail(b, "rollback");
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    ((sq *)arg)->wal_pages = pages;
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    sq *b = arg;
    pthread_setname_np(pthread_self(), "chatd-ckpt");
    pthread_mutex_lock(&b->ckpt_mu);
    for (;;) {
        while (!b->ckpt_wanted && !b->ckpt_stop)
            pthread_cond_wait(&b->ckpt_cv, &b->ckpt_mu);
        if (b->ckpt_stop)
            break;
        b->ckpt_wanted = false;
        b->ckpt_active = true;
        pthread_mutex_unlock(&b->ckpt_mu);
        /* PASSIVE takes no lock the writer needs and copies what is
         * committed; BUSY only means the writer is checkpointing itself. */
        int rc = sqlite3_wal_checkpoint_v2(b->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("store: checkpoint: %s", sqlite3_errmsg(b->ckpt_db));
        pthread_mutex_lock(&b->ckpt_mu);
        b->ckpt_active = false;
    }
    pthread_mutex_unlock(&b->ckpt_mu);
    return NULL;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The background purge of expired tokens and revoked-JWT entries: one
 * small transaction of at most STORE_PURGE_BATCH rows a table, so the
 * writer is held for a moment only (an index seek and a few page writes);
 * a full batch means more are due, and the next one runs after the next
 * pass rather than after the interval. */
static void purge_maybe(sq *b)
{
    if (b->purge_interval_ms < 0)
        return;
    int64_t now = wall_ms();
    if (!b->purge_more && now < b->next_purge_ms)
        return;
    int64_t tokens = 0, jwts = 0;
    bool ok = sq_exec_stmt(b->st[ST_BEGIN_WRITE]) == SQLITE_DONE;
    if (ok && sq_purge(b, now, STORE_PURGE_BATCH, &tokens, &jwts) == 0 &&
        sq_exec_stmt(b->st[ST_COMMIT]) == SQLITE_DONE) {
        if (tokens || jwts)
            log_debug("store: purged %lld expired tokens, %lld revoked JWTs", (long long)tokens,
                      (long long)jwts);
    } else {
        if (!sqlite3_get_autocommit(b->db))
            sq_exec_stmt(b->st[ST_ROLLBACK]);
        tokens = jwts = 0; /* try again after the interval */
    }
    b->purge_more = tokens >= STORE_PURGE_BATCH || jwts >= STORE_PURGE_BATCH;
    b->next_purge_ms = now + b->purge_interval_ms;
}

static void sq_maintain(void *p, bool idle)
{
    sq *b = p;
    purge_maybe(b);
    pthread_mutex_lock(&b->ckpt_mu);
    bool busy = b->ckpt_wanted || b->ckpt_active;
    if (b->wal_pages >= WAL_CKPT_RESTART) {
        /* Let the checkpointer finish rather than start it again. */
    } else if (b->wal_pages >= (idle ? WAL_CKPT_IDLE : WAL_CKPT_BUSY)) {
        b->ckpt_wanted = true;
        pthread_cond_signal(&b->ckpt_cv);
    }
    pthread_mutex_unlock(&b->ckpt_mu);
    if (b->wal_pages < WAL_CKPT_RESTART || (busy && b->wal_pages < WAL_CKPT_MAX))
        return;
    /* RESTART waits for a running checkpoint, copies the rest and makes the
     * next commit start the WAL from its beginning. */
    if (sqlite3_wal_checkpoint_v2(b->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL) == SQLITE_OK)
        b->wal_pages = 0;
    else
        log_warn("store: checkpoint: %s", sqlite3_errmsg(b->db));
}

/* mkdir -p, new directories private: the database holds password hashes. */
static int make_dirs(const char *path, char *err, size_t err_len)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf)) {
        snprintf(err, err_len, "bad data directory \"%s\"", path);
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            snprintf(err, err_len, "mkdir %s: %s", buf, strerror(errno));
            return -1;
        }
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, err_len, "%s is not a directory", path);
        return -1;
    }
    return 0;
}

/* Runs a statement of constant text that returns at most one value, e.g. a
 * PRAGMA, and copies that value as text into out (if given). */
static int pragma(sqlite3 *db, const char *sql, char *out, size_t out_len)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (out && out_len) {
        out[0] = '\0';
        if (rc == SQLITE_ROW)
            snprintf(out, out_len, "%s", sq_col_text(st, 0));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* The OS error behind SQLite's last failure, e.g. "Read-only file system",
 * which sqlite3_errmsg alone ("attempt to write a readonly database") does
 * not say. */
static const char *os_error(sqlite3 *db)
{
    int e = sqlite3_system_errno(db);
    return e ? strerror(e) : "no OS error";
}

/* Gives every user row without a key its key (names.h): the rows of a
 * database from before migration 2. Runs in the migration transaction, in
 * batches so no statement reads rows it is updating. Two old names may
 * share a key ("Jürgen" and "JÜRGEN" were distinct under ASCII NOCASE):
 * the older account keeps it, the newer gets the key of "<name>#<id>", so
 * it logs in as "<name>#<id>", and a warning names it for the operator. */
static int names_backfill(sqlite3 *db, char *err, size_t err_len)
{
    sqlite3_stmt *sel = NULL, *up = NULL;
    int ret = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, username FROM users WHERE name_key IS NULL"
                           " ORDER BY id LIMIT 1000",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE users SET name_key = ?2 WHERE id = ?1", -1, &up, NULL) !=
            SQLITE_OK) {
        snprintf(err, err_len, "username keys: %s", sqlite3_errmsg(db));
        goto out;
    }
    enum { BATCH = 1000 };
    int64_t *ids = malloc(BATCH * sizeof(*ids));
    char **names = calloc(BATCH, sizeof(*names));
    size_t done = 0;
    for (;;) {
        int n = 0, rc;
        while (ids && names && n < BATCH && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
            ids[n] = sqlite3_column_int64(sel, 0);
            names[n++] = strdup(sq_col_text(sel, 1));
        }
        sqlite3_reset(sel);
        if (n == 0)
            break;
        for (int i = 0; i < n; i++) {
            char alt[64];
            snprintf(alt, sizeof(alt), "#%lld", (long long)ids[i]);
            char *key = names[i] ? names_key(names[i]) : NULL;
            /* an unreadable name still needs a unique key: "#<id>" */
            sqlite3_bind_int64(up, 1, ids[i]);
            sqlite3_bind_text(up, 2, key ? key : alt, -1, SQLITE_TRANSIENT);
            rc = sq_exec_stmt(up);
            free(key);
            if (sq_is_constraint(rc) && names[i]) {
                size_t len = strlen(names[i]) + strlen(alt) + 1;
                char *renamed = malloc(len);
                key = NULL;
                if (renamed) {
                    snprintf(renamed, len, "%s%s", names[i], alt);
                    key = names_key(renamed);
                }
                log_warn("store: user %lld \"%s\" looks like an older account's name; it now "
                         "logs in as \"%s\"",
                         (long long)ids[i], names[i], renamed ? renamed : alt);
                free(renamed);
                sqlite3_bind_int64(up, 1, ids[i]);
                sqlite3_bind_text(up, 2, key ? key : alt, -1, SQLITE_TRANSIENT);
                rc = sq_exec_stmt(up);
                free(key);
            }
            if (rc != SQLITE_DONE) {
                snprintf(err, err_len, "username key of user %lld: %s", (long long)ids[i],
                         sqlite3_errmsg(db));
                for (int j = 0; j < n; j++)
                    free(names[j]);
                goto out_free;
            }
        }
        for (int j = 0; j < n; j++)
            free(names[j]);
        done += (size_t)n;
    }
    if (!ids || !names) {
        snprintf(err, err_len, "username keys: out of memory");
        goto out_free;
    }
    if (done)
        log_info("store: username keys computed for %zu users", done);
    ret = 0;
out_free:
    free(ids);
    free(names);
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(up);
    return ret;
}

/* Brings the schema from its user_version to the latest, all or nothing.
 * It always writes (user_version, even unchanged), so a database chatd
 * cannot write fails here, at start, not at the first message. */
static int migrate(sqlite3 *db, char *err, size_t err_len)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "begin migration: %s (%s)", sqlite3_errmsg(db), os_error(db));
        return -1;
    }
    char v[32];
    if (pragma(db, "PRAGMA user_version", v, sizeof(v)) != 0) {
        snprintf(err, err_len, "read user_version: %s", sqlite3_errmsg(db));
        goto fail;
    }
    long version = strtol(v, NULL, 10);
    if (version < 0 || version > STORE_SQLITE_SCHEMA_VERSION) {
        snprintf(err, err_len, "database schema version %ld is newer than this chatd (%d)", version,
                 STORE_SQLITE_SCHEMA_VERSION);
        goto fail;
    }
    for (long i = version; i < STORE_SQLITE_SCHEMA_VERSION; i++) {
        if (sqlite3_exec(db, migrations[i], NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, err_len, "migration %ld: %s", i + 1, sqlite3_errmsg(db));
            goto fail;
        }
    }
    if (names_backfill(db, err, err_len) != 0)
        goto fail;
    /* PRAGMA takes no parameters; the number is ours, not input. Set even
     * when unchanged: the write probe. */
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SQLITE_SCHEMA_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "cannot write the database: %s (%s)", sqlite3_errmsg(db),
                 os_error(db));
        goto fail;
    }
    if (version != STORE_SQLITE_SCHEMA_VERSION)
        log_info("store: schema migrated from version %ld to %d", version,
                 STORE_SQLITE_SCHEMA_VERSION);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "cannot write the database: %s (%s)", sqlite3_errmsg(db),
                 os_error(db));
        goto fail;
    }
    return 0;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* Per-connection settings, for the writer's and the checkpointer's. */
static int configure(sqlite3 *db, enum store_durability durability, char *err, size_t err_len)
{
    /* synchronous is what a commit (FULL: fsync the WAL) and a checkpoint
     * (both: fsync WAL and database) promise. busy_timeout: the other
     * connection, or another process (a backup, the sqlite3 shell), may
     * hold a lock for a moment. The cache holds the hot index pages of a
     * busy server. foreign_keys stay off: the operations check what they
     * need, and enforcing them would cost a lookup per reference per
     * write. */
    const char *const settings[] = {
        durability == STORE_DURABLE_NORMAL ? "PRAGMA synchronous = NORMAL"
                                           : "PRAGMA synchronous = FULL",
        "PRAGMA busy_timeout = 5000",
        "PRAGMA foreign_keys = OFF",
        "PRAGMA cache_size = -65536",
        "PRAGMA temp_store = MEMORY",
        "PRAGMA journal_size_limit = 67108864",
    };
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (pragma(db, settings[i], NULL, 0) != 0) {
            snprintf(err, err_len, "%s: %s", settings[i], sqlite3_errmsg(db));
            return -1;
        }
    }
    return 0;
}

static void sq_close(void *p)
{
    sq *b = p;
    if (!b)
        return;
    if (b->ckpt_running) {
        pthread_mutex_lock(&b->ckpt_mu);
        b->ckpt_stop = true;
        pthread_cond_signal(&b->ckpt_cv);
        pthread_mutex_unlock(&b->ckpt_mu);
        pthread_join(b->ckpt_thread, NULL);
        pthread_mutex_destroy(&b->ckpt_mu);
        pthread_cond_destroy(&b->ckpt_cv);
    }
    /* Closed first, so closing the writer's connection, the last one,
     * checkpoints the WAL completely and removes it. */
    if (b->ckpt_db)
        sqlite3_close(b->ckpt_db);
    conv_discard(b);
    users_clear(b);
    seqs_clear(b);
    free(b->pool);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(b->st[i]);
    if (b->db) {
        if (sqlite3_close(b->db) != SQLITE_OK)
            log_error("store: close: %s", sqlite3_errmsg(b->db));
    }
    free(b);
}

/* chmod 0600 the database and its -wal and -shm files where they exist. */
static int private_files(const char *path, char *err, size_t err_len)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char p[PATH_MAX + 8];
        snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
        if (chmod(p, 0600) != 0 && errno != ENOENT) {
            snprintf(err, err_len, "chmod 0600 %s: %s", p, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void *sq_open(const char *data_dir, enum store_durability durability, int purge_interval_ms,
                     char *err, size_t err_len)
{
    if (make_dirs(data_dir, err, err_len) != 0)
        return NULL;
    /* SQLite creates -wal and -shm beside the database; without a writable
     * directory it fails with a bare "readonly database". Say why first. */
    if (access(data_dir, W_OK | X_OK) != 0) {
        snprintf(err, err_len, "data directory %s cannot be written: %s", data_dir,
                 strerror(errno));
        return NULL;
    }
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/chatd.db", data_dir) >= sizeof(path)) {
        snprintf(err, err_len, "data directory path too long");
        return NULL;
    }
    sq *b = calloc(1, sizeof(*b));
    if (b) {
        b->purge_interval_ms = purge_interval_ms ? purge_interval_ms : STORE_PURGE_INTERVAL_MS;
        b->next_purge_ms = 0;
    }
    if (b)
        b->pool = calloc(CONV_PENDING_MAX, sizeof(*b->pool));
    if (!b || !b->pool) {
        if (b)
            free(b->pool);
        free(b);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    /* Memory statistics cost a global mutex per allocation, and chatd
     * reads none. Only possible before SQLite initializes; later it fails
     * harmlessly. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* NOMUTEX: one thread at a time uses the connection (open here, then
     * the storage thread), so SQLite's own locking would be pure cost.
     * The file holds password hashes: created 0600 whatever the umask
     * (SQLite gives -wal and -shm the database file's mode), and an older
     * file made with a looser umask is tightened. Start-up is single
     * threaded, so changing the process umask for a moment is safe. */
    mode_t old_umask = umask(077);
    int rc = sqlite3_open_v2(
        path, &b->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    umask(old_umask);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "open %s: %s (%s)", path,
                 b->db ? sqlite3_errmsg(b->db) : "out of memory",
                 b->db ? os_error(b->db) : "no OS error");
        sq_close(b);
        return NULL;
    }
    /* SQLite opens a file it may not write read-only, without an error:
     * chatd would look healthy and fail at the first write. */
    if (sqlite3_db_readonly(b->db, "main") == 1) {
        /* SQLite keeps no errno of the attempt it fell back from: ask again */
        int fd = open(path, O_RDWR | O_CLOEXEC);
        snprintf(err, err_len, "%s cannot be written: %s", path,
                 fd < 0 ? strerror(errno) : "SQLite opened it read-only");
        if (fd >= 0)
            close(fd);
        sq_close(b);
        return NULL;
    }
    if (private_files(path, err, err_len) != 0) {
        sq_close(b);
        return NULL;
    }
    char mode[16];
    if (pragma(b->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode)) != 0 ||
        strcmp(mode, "wal") != 0) {
        snprintf(err, err_len, "%s: cannot switch to WAL mode: %s (%s)", path,
                 sqlite3_errmsg(b->db), os_error(b->db));
        sq_close(b);
        return NULL;
    }
    if (configure(b->db, durability, err, err_len) != 0) {
        sq_close(b);
        return NULL;
    }
    if (migrate(b->db, err, err_len) != 0) {
        sq_close(b);
        return NULL;
    }
    /* Replaces SQLite's automatic checkpoints, see WAL_CKPT_BUSY. */
    sqlite3_wal_hook(b->db, wal_hook, b);
    if (sqlite3_open_v2(path, &b->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, err_len, "open %s: %s", path,
                 b->ckpt_db ? sqlite3_errmsg(b->ckpt_db) : "out of memory");
        sq_close(b);
        return NULL;
    }
    if (configure(b->ckpt_db, durability, err, err_len) != 0) {
        sq_close(b);
        return NULL;
    }
    sqlite3_wal_autocheckpoint(b->ckpt_db, 0);
    pthread_mutex_init(&b->ckpt_mu, NULL);
    pthread_cond_init(&b->ckpt_cv, NULL);
    if (pthread_create(&b->ckpt_thread, NULL, ckpt_main, b) != 0) {
        pthread_mutex_destroy(&b->ckpt_mu);
        pthread_cond_destroy(&b->ckpt_cv);
        snprintf(err, err_len, "cannot start the checkpoint thread");
        sq_close(b);
        return NULL;
    }
    b->ckpt_running = true;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(b->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &b->st[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, err_len, "prepare statement %d: %s", i, sqlite3_errmsg(b->db));
            sq_close(b);
            return NULL;
        }
    }
    return b;
}

/* store_backend.h's open: one connection, so always the primary. */
static void *sq_open_opts(const store_options *o, bool primary, char *err, size_t err_len)
{
    (void)primary;
    return sq_open(o->data_dir, o->durability, o->purge_interval_ms, err, err_len);
}

const struct store_backend_ops store_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open_opts,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .execute = sq_execute,
    .maintain = sq_maintain,
    .close = sq_close,
};
