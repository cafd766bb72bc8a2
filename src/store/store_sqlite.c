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
 * cache, and conversation rows are written once per pass (conv_note).
 * Each connection is used by one thread at a time (the writer's by the
 * storage thread, the checkpointer's by its own), so both are opened
 * without SQLite's mutexes. Being the only writer is what keeps the user
 * cache exact: one chatd process per data directory. */
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
#include "store/store_backend.h"

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
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SQLITE_SCHEMA_VERSION,
               "STORE_SQLITE_SCHEMA_VERSION must count the migrations");

/* The message columns every message query returns, in msg_json's order;
 * conv_lo 0 marks a group message (conv_hi is the group). */
#define MSG_COLS                                                                                   \
    "m.id, m.to_id, m.from_id, u.username, u.userpic, m.type, m.data, m.time, m.client_msg_id,"    \
    " m.seq, m.conv_lo, m.conv_hi"

enum stmt_id {
    ST_BEGIN_READ,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_INSERT,
    ST_USER_BY_NAME,
    ST_USER_BY_ID,
    ST_USER_BY_EXT,
    ST_USER_UPDATE,
    ST_USER_SEARCH,
    ST_TOKEN_INSERT,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_DELETE,
    ST_JWT_REVOKE,
    ST_JWT_PURGE,
    ST_JWT_REVOKED,
    ST_MSG_INSERT,
    ST_MSG_BY_CLIENT,
    ST_CONV_UPSERT,
    ST_CHAT_LIST,
    ST_HISTORY,
    ST_SYNC,
    ST_SYNC_CONVS,
    ST_SYNC_CONV,
    ST_CONV_LAST_SEQ,
    ST_CONV_GET,
    ST_CONV_READ,
    ST_UNREAD_TOTAL,
    ST_UNREAD_LIST,
    ST_ADMIN_USER,
    ST_ADMIN_TOKENS,
    ST_ADMIN_GET,
    ST_PURGE_TOKENS,
    ST_PURGE_JWTS,
    ST_LAST_SEEN,
    ST_SETTINGS,
    ST_PEERS,
    ST_USER_ACTIVE,
    ST_GROUP_INSERT,
    ST_GROUP_GET,
    ST_GROUP_PUT,
    ST_MEMBER_GET,
    ST_MEMBER_PUT,
    ST_MEMBER_IDS,
    ST_MEMBER_LIST,
    ST_SUCCESSOR,
    ST_USER_GROUPS,
    ST_GROUP_CHAT_LIST,
    ST_GROUP_HISTORY,
    ST_GROUP_SYNC_CONV,
    ST_COUNT
};

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
    /* no row for a disabled user */
    [ST_TOKEN_INSERT] = "INSERT INTO tokens(hash, user_id, expires_at)"
                        " SELECT ?1, id, ?3 FROM users WHERE id = ?2 AND disabled = 0",
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
                      " client_msg_id, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
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
                       " unread = unread + excluded.unread,"
                       " last_in_id = max(last_in_id, excluded.last_in_id)",
    [ST_CHAT_LIST] = "SELECT c.peer_id, u.username, u.userpic, m.type, m.data, m.time, c.unread,"
                     " c.last_message_id, m.seq, u.last_seen, u.hide_last_seen"
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
                      " muted = excluded.muted",
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
     * user may see; every group has one (its "create" message) */
    [ST_GROUP_CHAT_LIST] =
        "SELECT g.id, g.name, g.avatar, x.type, x.data, x.time, m.joined_seq, m.left_seq,"
        " m.read_seq, g.last_seq, x.id, x.seq, x.from_id, u.username, m.muted, m.role,"
        " g.member_count, g.dissolved"
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
};

const char *store_sqlite_search_sql(void)
{
    return stmt_sql[ST_USER_SEARCH];
}

/* Conversation changes of the open transaction not written yet: a send
 * only records them here, and they are written (one upsert per user and
 * peer, however many messages) before anything reads conversations and
 * before the commit. In a group commit most sends hit a conversation
 * another send of the same pass already hit, so this saves most of the two
 * upserts a send would cost; the result is the same rows in the same
 * transaction. */
typedef struct {
    int64_t user, peer;
} conv_key;

typedef struct {
    conv_key key;
    int64_t last_message_id, unread, last_in_id;
    UT_hash_handle hh;
} conv_delta;

/* Bounds the pending set; a full one is simply written early. */
#define CONV_PENDING_MAX 4096

/* Users as sends need them (the sender's name and picture for the result,
 * the recipient's existence), saving a lookup per send. Rows only change
 * through this connection, so the cache is exact as long as it forgets an
 * updated user and everything on rollback (a rolled back insert may have
 * been cached, and its id may be reused). */
typedef struct {
    int64_t id;
    char *username, *userpic;
    UT_hash_handle hh;
} user_entry;

#define USER_CACHE_MAX 65536

/* The newest seq of each conversation a send touched, so the next send's
 * seq costs no lookup. Exact for the same reason as the user cache (one
 * writer), as long as it is emptied on rollback: a rolled back send's seq
 * is free again. Keyed by (conv_lo, conv_hi). */
typedef struct {
    conv_key key;
    int64_t last_seq;
    UT_hash_handle hh;
} seq_entry;

#define SEQ_CACHE_MAX 65536

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

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    conv_delta *pending; /* uthash head; entries live in pool */
    conv_delta *pool;
    size_t npending;
    user_entry *users; /* uthash head */
    size_t nusers;
    seq_entry *seqs; /* uthash head */
    size_t nseqs;
    int wal_pages;         /* frames in the WAL after the last commit */
    int purge_interval_ms; /* < 0: never */
    int64_t next_purge_ms; /* wall clock; 0: at the first maintain */
    bool purge_more;       /* the last purge was a full batch: go on at once */

    /* The checkpointer: its connection is used by its thread only. */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    bool ckpt_running;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    bool ckpt_wanted, ckpt_active, ckpt_stop; /* under ckpt_mu */
} sq;

/* Logs the connection's last error and answers STORE_ERROR. */
static int db_fail(sq *b, const char *what)
{
    log_error("store: %s: %s", what, sqlite3_errmsg(b->db));
    return STORE_ERROR;
}

/* A caller bug, not a database failure; still an error answer, since the
 * store has no "bad request" status. */
static int bad_input(store_req *r, const char *what)
{
    log_error("store: request %d without %s", (int)r->op, what);
    return STORE_ERROR;
}

static sqlite3_stmt *prep(sq *b, enum stmt_id id)
{
    /* Statements are reset after every use, so one found busy here is a bug. */
    sqlite3_stmt *st = b->st[id];
    sqlite3_reset(st);
    return st;
}

/* Steps a statement that returns no rows and resets it. */
static int exec_stmt(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    /* STATIC: the request outlives the statement's use of the value. */
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? t : "";
}

/* limit <= 0 means no limit, which SQLite spells -1. */
static int64_t sql_limit(int64_t limit)
{
    return limit > 0 ? limit : -1;
}

/* {id, username, userpic} from columns 0..2. */
static json_t *user_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0), "username",
                     col_text(st, 1), "userpic", col_text(st, 2));
}

/* The last_seen others see: null when the user hides it or was never
 * seen offline (0). */
static json_t *last_seen_json(sqlite3_stmt *st, int col)
{
    int64_t t = sqlite3_column_int64(st, col);
    return t > 0 && !sqlite3_column_int(st, col + 1) ? json_integer(t) : json_null();
}

/* A user as others see it: {id, username, userpic, last_seen}; columns
 * 3..4 last_seen and hide_last_seen. */
static json_t *peer_user_json(sqlite3_stmt *st)
{
    json_t *u = user_json(st);
    if (u && json_object_set_new(u, "last_seen", last_seen_json(st, 3)) != 0) {
        json_decref(u);
        u = NULL;
    }
    return u;
}

/* A message from the MSG_COLS columns: a group's has group_id instead of
 * to_id. */
static json_t *msg_json(sqlite3_stmt *st)
{
    bool group = sqlite3_column_int64(st, 10) == 0;
    return json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "seq",
                     (json_int_t)sqlite3_column_int64(st, 9), group ? "group_id" : "to_id",
                     (json_int_t)sqlite3_column_int64(st, group ? 11 : 1), "from_id",
                     (json_int_t)sqlite3_column_int64(st, 2), "from_username", col_text(st, 3),
                     "from_userpic", col_text(st, 4), "type", col_text(st, 5), "data",
                     col_text(st, 6), "time", (json_int_t)sqlite3_column_int64(st, 7),
                     "client_msg_id", (const char *)sqlite3_column_text(st, 8));
}

/* Runs a query and collects one JSON value per row; NULL on failure. */
static json_t *rows_json(sq *b, sqlite3_stmt *st, json_t *(*row)(sqlite3_stmt *))
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
        db_fail(b, "query");
        json_decref(arr);
        arr = NULL;
    }
    sqlite3_reset(st);
    return arr;
}

/* Runs a query expected to return at most one row and turns it into JSON.
 * STORE_NOT_FOUND when there is no row. */
static int row_json(sq *b, sqlite3_stmt *st, json_t *(*row)(sqlite3_stmt *), json_t **out)
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
        status = db_fail(b, "query");
    }
    sqlite3_reset(st);
    return status;
}

static bool is_constraint(int rc)
{
    return (rc & 0xff) == SQLITE_CONSTRAINT;
}

static void user_forget(sq *b, user_entry *u)
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
        user_forget(b, u);
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
static seq_entry *seq_get(sq *b, int64_t lo, int64_t hi)
{
    conv_key key = {lo, hi};
    seq_entry *e;
    HASH_FIND(hh, b->seqs, &key, sizeof(key), e);
    if (e)
        return e;
    sqlite3_stmt *st = prep(b, ST_CONV_LAST_SEQ);
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int rc = sqlite3_step(st);
    int64_t last = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_fail(b, "last seq lookup");
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
static int user_get(sq *b, int64_t id, user_entry **out)
{
    HASH_FIND(hh, b->users, &id, sizeof(id), *out);
    if (*out)
        return STORE_OK;
    sqlite3_stmt *st = prep(b, ST_USER_BY_ID);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? STORE_NOT_FOUND : db_fail(b, "user lookup");
    }
    user_entry *u = calloc(1, sizeof(*u));
    if (u) {
        u->id = id;
        u->username = strdup(col_text(st, 1));
        u->userpic = strdup(col_text(st, 2));
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

static int op_user_create(sq *b, store_req *r)
{
    if (!r->username)
        return bad_input(r, "username");
    char *key = names_key(r->username);
    if (!key)
        return bad_input(r, "a username that has a key (valid UTF-8)");
    const char *pic = r->userpic ? r->userpic : "";
    sqlite3_stmt *st = prep(b, ST_USER_INSERT);
    bind_text(st, 1, r->username);
    bind_text(st, 2, r->password_hash);
    bind_text(st, 3, pic);
    sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, r->time);
    bind_text(st, 6, key);
    int rc = exec_stmt(st);
    free(key);
    if (is_constraint(rc))
        return STORE_CONFLICT;
    if (rc != SQLITE_DONE)
        return db_fail(b, "user insert");
    r->result = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_last_insert_rowid(b->db),
                          "username", r->username, "userpic", pic);
    return r->result ? STORE_OK : STORE_ERROR;
}

static json_t *user_with_hash_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:s?, s:b}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                     "username", col_text(st, 1), "userpic", col_text(st, 2), "password_hash",
                     (const char *)sqlite3_column_text(st, 3), "disabled",
                     sqlite3_column_int64(st, 4) != 0);
}

static int op_user_by_name(sq *b, store_req *r)
{
    if (!r->username)
        return bad_input(r, "username");
    char *key = names_key(r->username);
    if (!key) /* not UTF-8: no account has that name */
        return STORE_NOT_FOUND;
    sqlite3_stmt *st = prep(b, ST_USER_BY_NAME);
    bind_text(st, 1, key);
    int status = row_json(b, st, user_with_hash_json, &r->result);
    free(key);
    return status;
}

static int op_user_by_id(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_USER_BY_ID);
    sqlite3_bind_int64(st, 1, r->user_id);
    return row_json(b, st, user_json, &r->result);
}

static bool hash_given(const store_req *r)
{
    for (size_t i = 0; i < sizeof(r->token_hash); i++)
        if (r->token_hash[i])
            return true;
    return false;
}

/* STORE_OK when the JWT is not revoked, NOT_FOUND when it is. */
static int jwt_check_revoked(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_JWT_REVOKED);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->time);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return STORE_NOT_FOUND;
    return rc == SQLITE_DONE ? STORE_OK : db_fail(b, "revoked JWT lookup");
}

static int op_jwt_revoke(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_JWT_PURGE);
    sqlite3_bind_int64(st, 1, r->time);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "revoked JWT purge");
    st = prep(b, ST_JWT_REVOKE);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->expires);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "JWT revoke");
    r->result = json_null();
    return STORE_OK;
}

/* Finds or creates the user of an external identity and refreshes its name
 * and picture. Candidates in order: the wanted username; when another user
 * holds its key, "<username>#<external_id>"; and when even that is held
 * (two subs differing only in case, say), "<username>#x<hex of
 * external_id>" under the key "\x01" external_id, which no other row can
 * have: names never start with a control character and external_id is
 * unique (the hex keeps the name apart under the old ASCII NOCASE rule
 * too). So a valid identity gets an account, not an error. */
static int op_user_external(sq *b, store_req *r)
{
    if (!r->external_id || !r->username)
        return bad_input(r, "external_id/username");
    if (hash_given(r)) {
        int revoked = jwt_check_revoked(b, r);
        if (revoked != STORE_OK)
            return revoked;
    }
    const char *pic = r->userpic ? r->userpic : "";
    size_t alt_len = strlen(r->username) + 1 + strlen(r->external_id) + 1;
    char *alt = malloc(alt_len);
    char *last_key = malloc(strlen(r->external_id) + 2);
    char *keys[3] = {names_key(r->username), NULL, last_key};
    if (alt) {
        snprintf(alt, alt_len, "%s#%s", r->username, r->external_id);
        keys[1] = names_key(alt);
    }
    if (last_key) {
        last_key[0] = '\x01';
        strcpy(last_key + 1, r->external_id);
    }
    size_t hex_len = strlen(r->username) + 2 + 2 * strlen(r->external_id) + 1;
    char *hex = malloc(hex_len);
    if (hex) {
        int off = snprintf(hex, hex_len, "%s#x", r->username);
        for (const unsigned char *p = (const unsigned char *)r->external_id; *p; p++)
            off += snprintf(hex + off, hex_len - (size_t)off, "%02x", *p);
    }
    const char *names[3] = {r->username, alt, hex};
    int status = STORE_CONFLICT;
    if (!keys[0] || !keys[1] || !keys[2] || !hex) {
        status = bad_input(r, "a username that has a key (valid UTF-8)");
        goto out;
    }

    sqlite3_stmt *st = prep(b, ST_USER_BY_EXT);
    bind_text(st, 1, r->external_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW &&
        (sqlite3_column_int64(st, 3) != 0 || r->issued_at < sqlite3_column_int64(st, 4))) {
        /* disabled, or a JWT issued before the user's last revoke */
        sqlite3_reset(st);
        status = STORE_NOT_FOUND;
    } else if (rc == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        char *cur_name = strdup(col_text(st, 1));
        char *cur_pic = strdup(col_text(st, 2));
        sqlite3_reset(st);
        if (!cur_name || !cur_pic)
            status = STORE_ERROR;
        for (int i = 0; i < 3 && status == STORE_CONFLICT; i++) {
            const char *name = names[i];
            /* the name it already has is its own, whatever its key */
            if (i == 2 || strcmp(cur_name, name) != 0 || strcmp(cur_pic, pic) != 0) {
                sqlite3_stmt *up = prep(b, ST_USER_UPDATE);
                sqlite3_bind_int64(up, 1, id);
                bind_text(up, 2, name);
                bind_text(up, 3, pic);
                bind_text(up, 4, keys[i]);
                rc = exec_stmt(up);
                if (is_constraint(rc))
                    continue;
                if (rc != SQLITE_DONE) {
                    status = db_fail(b, "user update");
                    break;
                }
                user_entry *cached;
                HASH_FIND(hh, b->users, &id, sizeof(id), cached);
                if (cached)
                    user_forget(b, cached);
            }
            r->result = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "username", name,
                                  "userpic", pic);
            status = r->result ? STORE_OK : STORE_ERROR;
        }
        free(cur_name);
        free(cur_pic);
    } else if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        for (int i = 0; i < 3 && status == STORE_CONFLICT; i++) {
            sqlite3_stmt *ins = prep(b, ST_USER_INSERT);
            bind_text(ins, 1, names[i]);
            sqlite3_bind_null(ins, 2);
            bind_text(ins, 3, pic);
            bind_text(ins, 4, r->external_id);
            sqlite3_bind_int64(ins, 5, r->time);
            bind_text(ins, 6, keys[i]);
            rc = exec_stmt(ins);
            if (is_constraint(rc))
                continue;
            if (rc != SQLITE_DONE) {
                status = db_fail(b, "user insert");
                break;
            }
            r->result =
                json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_last_insert_rowid(b->db),
                          "username", names[i], "userpic", pic);
            status = r->result ? STORE_OK : STORE_ERROR;
        }
    } else {
        sqlite3_reset(st);
        status = db_fail(b, "user lookup");
    }
out:
    free(alt);
    free(hex);
    for (int i = 0; i < 3; i++)
        free(keys[i]);
    return status;
}

static int op_user_search(sq *b, store_req *r)
{
    if (!r->query)
        return bad_input(r, "query");
    char *key = names_key(r->query); /* NULL if not UTF-8: no name starts with it */
    char *hi = key ? store_search_bound(key) : NULL;
    if (!hi) {
        free(key);
        r->result = json_array();
        return r->result ? STORE_OK : STORE_ERROR;
    }
    sqlite3_stmt *st = prep(b, ST_USER_SEARCH);
    sqlite3_bind_int64(st, 1, r->user_id);
    bind_text(st, 2, key);
    bind_text(st, 3, hi);
    sqlite3_bind_int64(st, 4, sql_limit(r->limit));
    r->result = rows_json(b, st, peer_user_json);
    free(key);
    free(hi);
    return r->result ? STORE_OK : STORE_ERROR;
}

static int op_token_create(sq *b, store_req *r)
{
    user_entry *u;
    int status = user_get(b, r->user_id, &u);
    if (status != STORE_OK)
        return status;
    sqlite3_stmt *st = prep(b, ST_TOKEN_INSERT);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->user_id);
    sqlite3_bind_int64(st, 3, r->expires);
    int rc = exec_stmt(st);
    if (is_constraint(rc))
        return STORE_CONFLICT;
    if (rc != SQLITE_DONE)
        return db_fail(b, "token insert");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND; /* the user is disabled */
    r->result = json_null();
    return STORE_OK;
}

static int op_user_admin(sq *b, store_req *r)
{
    if (r->action < STORE_ADMIN_REVOKE || r->action > STORE_ADMIN_ENABLE)
        return bad_input(r, "a known admin action");
    sqlite3_stmt *st = prep(b, ST_ADMIN_USER);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->time);
    sqlite3_bind_int(st, 3, r->action);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "user admin update");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND;
    int64_t deleted = 0;
    if (r->action != STORE_ADMIN_ENABLE) {
        st = prep(b, ST_ADMIN_TOKENS);
        sqlite3_bind_int64(st, 1, r->user_id);
        if (exec_stmt(st) != SQLITE_DONE)
            return db_fail(b, "user tokens delete");
        deleted = sqlite3_changes64(b->db);
    }
    r->result = json_pack("{s:I, s:b}", "tokens_deleted", (json_int_t)deleted, "disabled",
                          r->action == STORE_ADMIN_DISABLE);
    return r->result ? STORE_OK : STORE_ERROR;
}

static int op_last_seen(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_LAST_SEEN);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->time);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "last_seen update");
    r->result = json_null();
    return sqlite3_changes(b->db) ? STORE_OK : STORE_NOT_FOUND;
}

static int op_user_settings(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_SETTINGS);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int(st, 2, r->action ? 1 : 0);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "settings update");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND;
    r->result = json_pack("{s:b}", "hide_last_seen", r->action ? 1 : 0);
    return r->result ? STORE_OK : STORE_ERROR;
}

static int op_presence_peers(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_PEERS);
    sqlite3_bind_int64(st, 1, r->user_id);
    json_t *peers = json_array();
    bool hide = false, found = false;
    int64_t last_seen = 0;
    int rc = SQLITE_DONE;
    while (peers && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        found = true;
        hide = sqlite3_column_int(st, 0) != 0;
        last_seen = sqlite3_column_int64(st, 1);
        if (sqlite3_column_type(st, 2) != SQLITE_NULL &&
            json_array_append_new(peers, json_integer(sqlite3_column_int64(st, 2))) != 0) {
            json_decref(peers);
            peers = NULL;
        }
    }
    int status = STORE_OK;
    if (peers && rc != SQLITE_DONE)
        status = db_fail(b, "presence peers");
    sqlite3_reset(st);
    if (!peers || status != STORE_OK) {
        json_decref(peers);
        return STORE_ERROR;
    }
    if (!found) {
        json_decref(peers);
        return STORE_NOT_FOUND;
    }
    r->result = json_pack("{s:b, s:I, s:o}", "hide_last_seen", hide, "last_seen",
                          (json_int_t)last_seen, "peers", peers);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* Deletes at most limit rows of each table past time. 0, or -1 (logged). */
static int purge(sq *b, int64_t time, int64_t limit, int64_t *tokens, int64_t *jwts)
{
    sqlite3_stmt *st = prep(b, ST_PURGE_TOKENS);
    sqlite3_bind_int64(st, 1, time);
    sqlite3_bind_int64(st, 2, limit);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "token purge"), -1;
    *tokens = sqlite3_changes64(b->db);
    st = prep(b, ST_PURGE_JWTS);
    sqlite3_bind_int64(st, 1, time);
    sqlite3_bind_int64(st, 2, limit);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "revoked JWT purge"), -1;
    *jwts = sqlite3_changes64(b->db);
    return 0;
}

static int op_token_purge(sq *b, store_req *r)
{
    int64_t tokens = 0, jwts = 0;
    if (purge(b, r->time, r->limit > 0 ? r->limit : STORE_PURGE_BATCH, &tokens, &jwts) != 0)
        return STORE_ERROR;
    r->result = json_pack("{s:I, s:I}", "tokens", (json_int_t)tokens, "jwts", (json_int_t)jwts);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* A user plus the token's "expires" (ms), so the token cache never keeps
 * a token past its expiry. */
static json_t *token_user_json(sqlite3_stmt *st)
{
    json_t *u = user_json(st);
    if (u && json_object_set_new(u, "expires", json_integer(sqlite3_column_int64(st, 3))) != 0) {
        json_decref(u);
        return NULL;
    }
    return u;
}

static int op_token_lookup(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_TOKEN_LOOKUP);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->time);
    return row_json(b, st, token_user_json, &r->result);
}

static int op_token_delete(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_TOKEN_DELETE);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    if (exec_stmt(st) != SQLITE_DONE)
        return db_fail(b, "token delete");
    r->result = json_null();
    return sqlite3_changes(b->db) > 0 ? STORE_OK : STORE_NOT_FOUND;
}

/* Writes the pending conversation changes. 0, or -1 when the transaction
 * must not be committed. Either way nothing is pending afterwards. */
static int conv_flush(sq *b)
{
    int ret = 0;
    for (size_t i = 0; i < b->npending && ret == 0; i++) {
        conv_delta *d = &b->pool[i];
        sqlite3_stmt *st = prep(b, ST_CONV_UPSERT);
        sqlite3_bind_int64(st, 1, d->key.user);
        sqlite3_bind_int64(st, 2, d->key.peer);
        sqlite3_bind_int64(st, 3, d->last_message_id);
        sqlite3_bind_int64(st, 4, d->unread);
        sqlite3_bind_int64(st, 5, d->last_in_id);
        if (exec_stmt(st) != SQLITE_DONE)
            ret = db_fail(b, "conversation upsert");
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
static int conv_note(sq *b, int64_t user, int64_t peer, int64_t msg_id, int64_t unread,
                     int64_t in_id)
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

static int op_message_send(sq *b, store_req *r)
{
    if (!r->msg_type || !r->msg_data)
        return bad_input(r, "msg_type/msg_data");
    int64_t from = r->user_id, to = r->peer_id;
    user_entry *sender, *recipient;
    int status = user_get(b, to, &recipient);
    if (status == STORE_OK)
        status = user_get(b, from, &sender);
    if (status != STORE_OK)
        return status;

    /* One writer: the next seq is the conversation's newest plus one, and
     * this transaction holds the write lock until it commits, so seqs are
     * handed out in commit order without holes (a rollback empties the
     * cache, freeing them again). */
    int64_t lo = from < to ? from : to, hi = from < to ? to : from;
    seq_entry *conv = seq_get(b, lo, hi);
    if (!conv)
        return STORE_ERROR;
    int64_t seq = conv->last_seq + 1;

    /* The result is built from the inputs before the insert; only the id is
     * filled in after it. */
    json_t *msg = json_pack(
        "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id", (json_int_t)0, "seq",
        (json_int_t)seq, "to_id", (json_int_t)to, "from_id", (json_int_t)from, "from_username",
        sender->username, "from_userpic", sender->userpic, "type", r->msg_type, "data", r->msg_data,
        "time", (json_int_t)r->time, "client_msg_id", r->client_msg_id);
    if (!msg)
        return STORE_ERROR;

    sqlite3_stmt *st = prep(b, ST_MSG_INSERT);
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    sqlite3_bind_int64(st, 3, lo);
    sqlite3_bind_int64(st, 4, hi);
    bind_text(st, 5, r->msg_type);
    bind_text(st, 6, r->msg_data);
    sqlite3_bind_int64(st, 7, r->time);
    bind_text(st, 8, r->client_msg_id);
    sqlite3_bind_int64(st, 9, seq);
    if (exec_stmt(st) != SQLITE_DONE) {
        json_decref(msg);
        return db_fail(b, "message insert");
    }
    if (sqlite3_changes(b->db) == 0) {
        /* Only a repeated (from_id, client_msg_id) skips the insert. */
        json_decref(msg);
        if (!r->client_msg_id)
            return db_fail(b, "message insert skipped");
        st = prep(b, ST_MSG_BY_CLIENT);
        sqlite3_bind_int64(st, 1, from);
        bind_text(st, 2, r->client_msg_id);
        status = row_json(b, st, msg_json, &r->result);
        if (status == STORE_NOT_FOUND)
            return db_fail(b, "duplicate message vanished");
        r->duplicate = status == STORE_OK;
        return status;
    }
    int64_t id = sqlite3_last_insert_rowid(b->db);
    conv->last_seq = seq;
    /* From here on a failure leaves the message without its conversation
     * rows; STORE_ERROR makes the caller roll the whole transaction back. */
    if (json_object_set_new(msg, "id", json_integer(id)) != 0 ||
        conv_note(b, from, to, id, 0, 0) != 0 || conv_note(b, to, from, id, 1, id) != 0) {
        json_decref(msg);
        return STORE_ERROR;
    }
    r->result = msg;
    return STORE_OK;
}

/* ---- groups: rows and computed counts (store.h, "Groups") ---------------- */

typedef struct {
    int64_t id, owner_id, created_at, member_count, last_seq, last_message_id;
    bool dissolved;
    char *name, *avatar;
} group_row;

typedef struct {
    bool found; /* a member now or before (then left_seq > 0) */
    int role;   /* enum store_group_role */
    int64_t joined_seq, join_order, left_seq, read_seq;
    bool muted;
} member_row;

/* One of a user's groups as ST_USER_GROUPS gives it. */
typedef struct {
    int64_t id, last_seq, joined_seq, left_seq, read_seq, last_id;
    bool muted;
} user_group;

static const char *role_name(int role)
{
    return role == STORE_GROUP_ROLE_OWNER   ? "owner"
           : role == STORE_GROUP_ROLE_ADMIN ? "admin"
                                            : "member";
}

/* The newest seq a member may see: its left_seq once it left. */
static int64_t member_upper(int64_t last_seq, int64_t left_seq)
{
    return left_seq > 0 && left_seq < last_seq ? left_seq : last_seq;
}

/* The unread count, computed: the seqs the member may see above the last
 * it read (its range starts at joined_seq). */
static int64_t member_unread(int64_t last_seq, int64_t joined_seq, int64_t left_seq,
                             int64_t read_seq)
{
    int64_t seen = read_seq > joined_seq - 1 ? read_seq : joined_seq - 1;
    int64_t n = member_upper(last_seq, left_seq) - seen;
    return n > 0 ? n : 0;
}

/* The user's groups (current and left) into *out, malloc'd, *n of them. */
static int user_groups(sq *b, int64_t user, user_group **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    sqlite3_stmt *st = prep(b, ST_USER_GROUPS);
    sqlite3_bind_int64(st, 1, user);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            void *p = realloc(*out, ncap * sizeof(**out));
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
            cap = ncap;
        }
        user_group *g = &(*out)[(*n)++];
        g->id = sqlite3_column_int64(st, 0);
        g->last_seq = sqlite3_column_int64(st, 1);
        g->joined_seq = sqlite3_column_int64(st, 2);
        g->left_seq = sqlite3_column_int64(st, 3);
        g->read_seq = sqlite3_column_int64(st, 4);
        g->muted = sqlite3_column_int(st, 5) != 0;
        g->last_id = sqlite3_column_int64(st, 6);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return STORE_OK;
    free(*out);
    *out = NULL;
    *n = 0;
    return rc == SQLITE_NOMEM ? STORE_ERROR : db_fail(b, "user groups");
}

static json_t *chat_item_json(sqlite3_stmt *st)
{
    return json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "chat_type",
                     "single", "userid", (json_int_t)sqlite3_column_int64(st, 0), "username",
                     col_text(st, 1), "userpic", col_text(st, 2), "type", col_text(st, 3), "data",
                     col_text(st, 4), "time", (json_int_t)sqlite3_column_int64(st, 5), "noreadnum",
                     (json_int_t)sqlite3_column_int64(st, 6), "last_message_id",
                     (json_int_t)sqlite3_column_int64(st, 7), "last_seq",
                     (json_int_t)sqlite3_column_int64(st, 8), "last_seen", last_seen_json(st, 9));
}

/* A group item of the chat list, from ST_GROUP_CHAT_LIST. */
static json_t *group_item_json(sqlite3_stmt *st)
{
    int64_t left = sqlite3_column_int64(st, 7);
    int64_t unread = member_unread(sqlite3_column_int64(st, 9), sqlite3_column_int64(st, 6), left,
                                   sqlite3_column_int64(st, 8));
    return json_pack(
        "{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:s, s:I, s:b, s:b}",
        "chat_type", "group", "group_id", (json_int_t)sqlite3_column_int64(st, 0), "name",
        col_text(st, 1), "avatar", col_text(st, 2), "type", col_text(st, 3), "data",
        col_text(st, 4), "time", (json_int_t)sqlite3_column_int64(st, 5), "noreadnum",
        (json_int_t)unread, "last_message_id", (json_int_t)sqlite3_column_int64(st, 10), "last_seq",
        (json_int_t)sqlite3_column_int64(st, 11), "from_id",
        (json_int_t)sqlite3_column_int64(st, 12), "from_username", col_text(st, 13), "muted",
        sqlite3_column_int(st, 14) != 0, "role", role_name(sqlite3_column_int(st, 15)),
        "member_count", (json_int_t)sqlite3_column_int64(st, 16), "dissolved",
        sqlite3_column_int(st, 17) != 0, "left", left > 0);
}

static int by_last_message_desc(const void *x, const void *y)
{
    json_int_t a = json_integer_value(json_object_get(*(json_t *const *)x, "last_message_id"));
    json_int_t b = json_integer_value(json_object_get(*(json_t *const *)y, "last_message_id"));
    return a < b ? 1 : a > b ? -1 : 0;
}

/* 1:1 and group items in one list, sorted in memory: a user has few
 * conversations, and each part is one seek on its own index. */
static int op_chat_list(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_CHAT_LIST);
    sqlite3_bind_int64(st, 1, r->user_id);
    json_t *singles = rows_json(b, st, chat_item_json);
    json_t *groups = NULL;
    if (singles) {
        st = prep(b, ST_GROUP_CHAT_LIST);
        sqlite3_bind_int64(st, 1, r->user_id);
        groups = rows_json(b, st, group_item_json);
    }
    size_t n = json_array_size(singles) + json_array_size(groups);
    json_t **items = groups ? malloc((n ? n : 1) * sizeof(*items)) : NULL;
    int status = STORE_ERROR;
    if (items) {
        size_t k = 0, i;
        json_t *it;
        json_array_foreach(singles, i, it)
        {
            items[k++] = it;
        }
        json_array_foreach(groups, i, it)
        {
            items[k++] = it;
        }
        qsort(items, n, sizeof(*items), by_last_message_desc);
        r->result = json_array();
        for (i = 0; r->result && i < n; i++) {
            if (json_array_append(r->result, items[i]) != 0) {
                json_decref(r->result);
                r->result = NULL;
            }
        }
        if (r->result)
            status = STORE_OK;
    }
    free(items);
    json_decref(singles);
    json_decref(groups);
    return status;
}

static int op_history(sq *b, store_req *r)
{
    int64_t lo = r->user_id < r->peer_id ? r->user_id : r->peer_id;
    int64_t hi = r->user_id < r->peer_id ? r->peer_id : r->user_id;
    sqlite3_stmt *st = prep(b, ST_HISTORY);
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    sqlite3_bind_int64(st, 3, r->before > 0 ? r->before : INT64_MAX);
    sqlite3_bind_int64(st, 4, sql_limit(r->limit));
    r->result = rows_json(b, st, msg_json);
    return r->result ? STORE_OK : STORE_ERROR;
}

static int op_sync(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_SYNC);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->after);
    sqlite3_bind_int64(st, 3, sql_limit(r->limit));
    r->result = rows_json(b, st, msg_json);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* The client's cursor of a conversation: the integer under prefix and the
 * id in decimal ("" and a peer's user id, "g" and a group id) in cursors,
 * 0 when absent (or not a non-negative integer: the chat service validates
 * them). */
static int64_t cursor_of(const json_t *cursors, const char *prefix, int64_t id)
{
    char key[32];
    snprintf(key, sizeof(key), "%s%lld", prefix, (long long)id);
    json_t *v = json_object_get(cursors, key);
    json_int_t c = json_is_integer(v) ? json_integer_value(v) : 0;
    return c > 0 ? c : 0;
}

/* A conversation cursor sync answers for. */
typedef struct {
    int64_t id; /* the peer user, or the group */
    bool group;
    int64_t after;   /* exclusive: the cursor (a group's never below joined_seq - 1) */
    int64_t upto;    /* the newest seq the user may see */
    int64_t last_id; /* its id: the most recent conversation first */
} sync_conv;

static int by_recent(const void *x, const void *y)
{
    int64_t a = ((const sync_conv *)x)->last_id, b = ((const sync_conv *)y)->last_id;
    return a < b ? 1 : a > b ? -1 : 0;
}

static int sync_add(sync_conv **v, size_t *n, size_t *cap, sync_conv c)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void *p = realloc(*v, ncap * sizeof(**v));
        if (!p)
            return -1;
        *v = p;
        *cap = ncap;
    }
    (*v)[(*n)++] = c;
    return 0;
}

/* Work: one pass over the user's conversations (as the chat list) and its
 * groups (a seek on group_members_user), and one index seek plus at most
 * limit rows per conversation above its cursor. A group is read within the
 * user's seq range only. Past the limit, a conversation above its cursor
 * is still listed, with no messages and more: true, so the client knows to
 * ask again. */
static int op_sync_cursors(sq *b, store_req *r)
{
    if (r->cursors && !json_is_object(r->cursors))
        return bad_input(r, "cursors as an object");
    /* the conversations first: the per-conversation query cannot run while
     * this one is stepping on the same connection's statements */
    sqlite3_stmt *st = prep(b, ST_SYNC_CONVS);
    sqlite3_bind_int64(st, 1, r->user_id);
    size_t n = 0, cap = 0;
    sync_conv *todo = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sync_conv c = {.id = sqlite3_column_int64(st, 0),
                       .upto = sqlite3_column_int64(st, 1),
                       .last_id = sqlite3_column_int64(st, 2)};
        c.after = cursor_of(r->cursors, "", c.id);
        if (c.upto > c.after && sync_add(&todo, &n, &cap, c) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_reset(st);
    int status = STORE_OK;
    if (rc != SQLITE_DONE)
        status = rc == SQLITE_NOMEM ? STORE_ERROR : db_fail(b, "sync conversations");
    user_group *groups = NULL;
    size_t ngroups = 0;
    if (status == STORE_OK)
        status = user_groups(b, r->user_id, &groups, &ngroups);
    for (size_t i = 0; i < ngroups && status == STORE_OK; i++) {
        user_group *g = &groups[i];
        sync_conv c = {.id = g->id,
                       .group = true,
                       .after = cursor_of(r->cursors, "g", g->id),
                       .upto = member_upper(g->last_seq, g->left_seq),
                       .last_id = g->last_id};
        if (c.after < g->joined_seq - 1)
            c.after = g->joined_seq - 1;
        if (c.upto > c.after && sync_add(&todo, &n, &cap, c) != 0)
            status = STORE_ERROR;
    }
    free(groups);
    if (status == STORE_OK)
        qsort(todo, n, sizeof(*todo), by_recent);
    json_t *convs = json_array();
    if (!convs)
        status = STORE_ERROR;
    int64_t left = r->limit > 0 ? r->limit : INT64_MAX;
    for (size_t i = 0; i < n && status == STORE_OK; i++) {
        sync_conv *c = &todo[i];
        json_t *msgs;
        if (left > 0 && c->group) {
            st = prep(b, ST_GROUP_SYNC_CONV);
            sqlite3_bind_int64(st, 1, c->id);
            sqlite3_bind_int64(st, 2, c->after);
            sqlite3_bind_int64(st, 3, c->upto);
            sqlite3_bind_int64(st, 4, left);
            msgs = rows_json(b, st, msg_json);
        } else if (left > 0) {
            st = prep(b, ST_SYNC_CONV);
            sqlite3_bind_int64(st, 1, r->user_id < c->id ? r->user_id : c->id);
            sqlite3_bind_int64(st, 2, r->user_id < c->id ? c->id : r->user_id);
            sqlite3_bind_int64(st, 3, c->after);
            sqlite3_bind_int64(st, 4, left);
            msgs = rows_json(b, st, msg_json);
        } else {
            msgs = json_array();
        }
        size_t got = json_array_size(msgs);
        json_t *newest = got ? json_array_get(msgs, got - 1) : NULL;
        int64_t upto = newest ? json_integer_value(json_object_get(newest, "seq")) : c->after;
        json_t *item = msgs ? json_pack("{s:I, s:o, s:b}", c->group ? "group_id" : "userid",
                                        (json_int_t)c->id, "messages", msgs, "more", upto < c->upto)
                            : NULL;
        if (!item || json_array_append_new(convs, item) != 0)
            status = STORE_ERROR;
        left -= (int64_t)got;
    }
    free(todo);
    if (status == STORE_OK)
        r->result = json_pack("{s:o}", "conversations", convs);
    else
        json_decref(convs);
    return status == STORE_OK && !r->result ? STORE_ERROR : status;
}

/* The user's unread sum of 1:1 conversations; -1 on error. */
static int64_t unread_total(sq *b, int64_t user)
{
    sqlite3_stmt *st = prep(b, ST_UNREAD_TOTAL);
    sqlite3_bind_int64(st, 1, user);
    int64_t total = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        total = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return total;
}

/* The user's unread total as every answer gives it: 1:1 conversations and
 * the groups not muted; -1 on error. */
static int64_t unread_all(sq *b, int64_t user)
{
    int64_t total = unread_total(b, user);
    user_group *groups;
    size_t n;
    if (total < 0 || user_groups(b, user, &groups, &n) != STORE_OK)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!groups[i].muted)
            total += member_unread(groups[i].last_seq, groups[i].joined_seq, groups[i].left_seq,
                                   groups[i].read_seq);
    }
    free(groups);
    return total;
}

static int op_read(sq *b, store_req *r)
{
    user_entry *peer;
    int status = user_get(b, r->peer_id, &peer);
    if (status != STORE_OK)
        return status;
    sqlite3_stmt *st = prep(b, ST_CONV_GET);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->peer_id);
    int rc = sqlite3_step(st);
    int64_t last_in = 0, unread = 0, last_read = 0;
    if (rc == SQLITE_ROW) {
        last_in = sqlite3_column_int64(st, 0);
        unread = sqlite3_column_int64(st, 1);
        last_read = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(b, "conversation lookup");
    /* Reading an already read conversation (or none) writes nothing. */
    bool changed = rc == SQLITE_ROW && (unread != 0 || last_read != last_in);
    if (changed) {
        st = prep(b, ST_CONV_READ);
        sqlite3_bind_int64(st, 1, r->user_id);
        sqlite3_bind_int64(st, 2, r->peer_id);
        sqlite3_bind_int64(st, 3, last_in);
        if (exec_stmt(st) != SQLITE_DONE)
            return db_fail(b, "conversation read");
    }
    int64_t total = unread_all(b, r->user_id);
    if (total < 0)
        return db_fail(b, "unread total");
    r->result = json_pack("{s:I, s:I, s:b}", "total", (json_int_t)total, "last_read_id",
                          (json_int_t)last_in, "changed", changed);
    return r->result ? STORE_OK : STORE_ERROR;
}

static json_t *unread_item_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:I}", "userid", (json_int_t)sqlite3_column_int64(st, 0), "noreadnum",
                     (json_int_t)sqlite3_column_int64(st, 1));
}

static int op_unread(sq *b, store_req *r)
{
    sqlite3_stmt *st = prep(b, ST_UNREAD_LIST);
    sqlite3_bind_int64(st, 1, r->user_id);
    json_t *list = rows_json(b, st, unread_item_json);
    if (!list)
        return STORE_ERROR;
    json_int_t total = 0;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        total += json_integer_value(json_object_get(item, "noreadnum"));
    }
    user_group *groups;
    size_t n;
    json_t *glist = json_array();
    if (!glist || user_groups(b, r->user_id, &groups, &n) != STORE_OK) {
        json_decref(list);
        json_decref(glist);
        return STORE_ERROR;
    }
    int status = STORE_OK;
    for (i = 0; i < n && status == STORE_OK; i++) {
        user_group *g = &groups[i];
        int64_t unread = member_unread(g->last_seq, g->joined_seq, g->left_seq, g->read_seq);
        if (unread == 0)
            continue;
        if (!g->muted)
            total += unread;
        if (json_array_append_new(glist, json_pack("{s:I, s:I, s:b}", "group_id", (json_int_t)g->id,
                                                   "noreadnum", (json_int_t)unread, "muted",
                                                   g->muted)) != 0)
            status = STORE_ERROR;
    }
    free(groups);
    if (status != STORE_OK) {
        json_decref(list);
        json_decref(glist);
        return status;
    }
    r->result =
        json_pack("{s:I, s:o, s:o}", "total", total, "conversations", list, "groups", glist);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* ---- group operations ------------------------------------------------------
 *
 * Each checks everything before it writes anything, so a refusal
 * (NOT_FOUND, FORBIDDEN, CONFLICT) leaves the pass's transaction as it
 * found it; only STORE_ERROR may leave a partial write (the caller rolls
 * back). A change writes its system message, the group row and the member
 * rows it touches: the actor's read position moves to the message it
 * caused. */

static void group_row_free(group_row *g)
{
    free(g->name);
    free(g->avatar);
    g->name = g->avatar = NULL;
}

/* Answers a refusal: status with result {code, message}. */
static int group_err(store_req *r, int status, const char *code, const char *message)
{
    json_decref(r->result);
    r->result = json_pack("{s:s, s:s}", "code", code, "message", message);
    return r->result ? status : STORE_ERROR;
}

static int group_load(sq *b, store_req *r, int64_t id, group_row *g)
{
    memset(g, 0, sizeof(*g));
    sqlite3_stmt *st = prep(b, ST_GROUP_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        g->id = id;
        g->name = strdup(col_text(st, 0));
        g->avatar = strdup(col_text(st, 1));
        g->owner_id = sqlite3_column_int64(st, 2);
        g->created_at = sqlite3_column_int64(st, 3);
        g->member_count = sqlite3_column_int64(st, 4);
        g->dissolved = sqlite3_column_int(st, 5) != 0;
        g->last_seq = sqlite3_column_int64(st, 6);
        g->last_message_id = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return group_err(r, STORE_NOT_FOUND, "not_found", "No such group.");
    if (rc != SQLITE_ROW)
        return db_fail(b, "group lookup");
    if (!g->name || !g->avatar) {
        group_row_free(g);
        return STORE_ERROR;
    }
    return STORE_OK;
}

static int group_save(sq *b, const group_row *g)
{
    sqlite3_stmt *st = prep(b, ST_GROUP_PUT);
    sqlite3_bind_int64(st, 1, g->id);
    bind_text(st, 2, g->name);
    bind_text(st, 3, g->avatar);
    sqlite3_bind_int64(st, 4, g->owner_id);
    sqlite3_bind_int64(st, 5, g->member_count);
    sqlite3_bind_int(st, 6, g->dissolved ? 1 : 0);
    sqlite3_bind_int64(st, 7, g->last_seq);
    sqlite3_bind_int64(st, 8, g->last_message_id);
    return exec_stmt(st) == SQLITE_DONE ? STORE_OK : db_fail(b, "group update");
}

static int member_load(sq *b, int64_t gid, int64_t uid, member_row *m)
{
    memset(m, 0, sizeof(*m));
    sqlite3_stmt *st = prep(b, ST_MEMBER_GET);
    sqlite3_bind_int64(st, 1, gid);
    sqlite3_bind_int64(st, 2, uid);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        m->found = true;
        m->role = sqlite3_column_int(st, 0);
        m->joined_seq = sqlite3_column_int64(st, 1);
        m->join_order = sqlite3_column_int64(st, 2);
        m->left_seq = sqlite3_column_int64(st, 3);
        m->read_seq = sqlite3_column_int64(st, 4);
        m->muted = sqlite3_column_int(st, 5) != 0;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : db_fail(b, "member lookup");
}

static int member_save(sq *b, int64_t gid, int64_t uid, const member_row *m)
{
    sqlite3_stmt *st = prep(b, ST_MEMBER_PUT);
    sqlite3_bind_int64(st, 1, gid);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_int(st, 3, m->role);
    sqlite3_bind_int64(st, 4, m->joined_seq);
    sqlite3_bind_int64(st, 5, m->join_order);
    sqlite3_bind_int64(st, 6, m->left_seq);
    sqlite3_bind_int64(st, 7, m->read_seq);
    sqlite3_bind_int(st, 8, m->muted ? 1 : 0);
    return exec_stmt(st) == SQLITE_DONE ? STORE_OK : db_fail(b, "member update");
}

static json_t *group_json(const group_row *g)
{
    return json_pack("{s:I, s:s, s:s, s:I, s:I, s:I, s:b, s:I}", "group_id", (json_int_t)g->id,
                     "name", g->name, "avatar", g->avatar, "owner_id", (json_int_t)g->owner_id,
                     "created_at", (json_int_t)g->created_at, "member_count",
                     (json_int_t)g->member_count, "dissolved", g->dissolved, "last_seq",
                     (json_int_t)g->last_seq);
}

/* The ids of the group's current members, plus extra (a member who just
 * left or was removed: it receives that message) when > 0. */
static json_t *member_ids(sq *b, int64_t gid, int64_t extra)
{
    json_t *ids = json_array();
    sqlite3_stmt *st = prep(b, ST_MEMBER_IDS);
    sqlite3_bind_int64(st, 1, gid);
    int rc = SQLITE_DONE;
    while (ids && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (json_array_append_new(ids, json_integer(sqlite3_column_int64(st, 0))) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    }
    sqlite3_reset(st);
    if (ids && rc != SQLITE_DONE) {
        db_fail(b, "member ids");
        json_decref(ids);
        return NULL;
    }
    if (ids && extra > 0 && json_array_append_new(ids, json_integer(extra)) != 0) {
        json_decref(ids);
        return NULL;
    }
    return ids;
}

/* The group's start for an operation by user: the group (NOT_FOUND), the
 * user's member row (FORBIDDEN not_member when it never was one, or, with
 * current, when it is none now) and, with writable, CONFLICT
 * group_dissolved for a dissolved group. On anything but STORE_OK, g holds
 * nothing to free. */
static int group_open(sq *b, store_req *r, group_row *g, member_row *m, bool current, bool writable)
{
    int status = group_load(b, r, r->group_id, g);
    if (status != STORE_OK)
        return status;
    status = member_load(b, g->id, r->user_id, m);
    if (status == STORE_OK && (!m->found || (current && m->left_seq > 0)))
        status = group_err(r, STORE_FORBIDDEN, "not_member", "You are not a member of this group.");
    else if (status == STORE_OK && writable && g->dissolved)
        status = group_err(r, STORE_CONFLICT, "group_dissolved", "The group was dissolved.");
    if (status != STORE_OK)
        group_row_free(g);
    return status;
}

/* {userid, username} of a user; NULL on error. */
static json_t *user_ref(sq *b, int64_t id)
{
    user_entry *u;
    if (user_get(b, id, &u) != STORE_OK)
        return NULL;
    return json_pack("{s:I, s:s}", "userid", (json_int_t)id, "username", u->username);
}

/* A system message's data: {event, actor, users, ...extra} as compact JSON
 * (malloc'd), users and extra (an object or NULL) taken over. */
static char *system_data(const char *event, int64_t actor, json_t *users, json_t *extra)
{
    json_t *o = users ? json_pack("{s:s, s:I, s:o}", "event", event, "actor", (json_int_t)actor,
                                  "users", users)
                      : NULL;
    char *s = NULL;
    if (o && (!extra || json_object_update(o, extra) == 0))
        s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    json_decref(extra);
    return s;
}

/* Stores a message of group g from user from (a system message when type is
 * "system") and moves g's last_seq/last_message_id to it (the caller saves
 * g). The seq comes from the seq cache under key (0, group), like a 1:1
 * conversation's. A repeated (from, client_msg_id) writes nothing: *msg is
 * the stored message and *dup true. */
static int group_post(sq *b, group_row *g, int64_t from, const char *type, const char *data,
                      const char *client_msg_id, int64_t time, json_t **msg, bool *dup)
{
    *msg = NULL;
    *dup = false;
    if (!data)
        return STORE_ERROR;
    user_entry *sender;
    int status = user_get(b, from, &sender);
    if (status != STORE_OK)
        return status == STORE_NOT_FOUND ? db_fail(b, "group message sender vanished") : status;
    seq_entry *conv = seq_get(b, 0, g->id);
    if (!conv)
        return STORE_ERROR;
    int64_t seq = conv->last_seq + 1;
    json_t *m =
        json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id", (json_int_t)0, "seq",
                  (json_int_t)seq, "group_id", (json_int_t)g->id, "from_id", (json_int_t)from,
                  "from_username", sender->username, "from_userpic", sender->userpic, "type", type,
                  "data", data, "time", (json_int_t)time, "client_msg_id", client_msg_id);
    if (!m)
        return STORE_ERROR;
    sqlite3_stmt *st = prep(b, ST_MSG_INSERT);
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, 0);
    sqlite3_bind_int64(st, 3, 0);
    sqlite3_bind_int64(st, 4, g->id);
    bind_text(st, 5, type);
    bind_text(st, 6, data);
    sqlite3_bind_int64(st, 7, time);
    bind_text(st, 8, client_msg_id);
    sqlite3_bind_int64(st, 9, seq);
    if (exec_stmt(st) != SQLITE_DONE) {
        json_decref(m);
        return db_fail(b, "group message insert");
    }
    if (sqlite3_changes(b->db) == 0) {
        json_decref(m);
        if (!client_msg_id)
            return db_fail(b, "group message insert skipped");
        st = prep(b, ST_MSG_BY_CLIENT);
        sqlite3_bind_int64(st, 1, from);
        bind_text(st, 2, client_msg_id);
        status = row_json(b, st, msg_json, msg);
        if (status == STORE_NOT_FOUND)
            return db_fail(b, "duplicate message vanished");
        *dup = status == STORE_OK;
        return status;
    }
    int64_t id = sqlite3_last_insert_rowid(b->db);
    conv->last_seq = seq;
    g->last_seq = seq;
    g->last_message_id = id;
    if (json_object_set_new(m, "id", json_integer(id)) != 0) {
        json_decref(m);
        return STORE_ERROR;
    }
    *msg = m;
    return STORE_OK;
}

/* Posts a system message (data from system_data, freed here). */
static int group_post_system(sq *b, store_req *r, group_row *g, char *data, json_t **msg)
{
    bool dup;
    int status = group_post(b, g, r->user_id, "system", data, NULL, r->time, msg, &dup);
    free(data);
    return status;
}

/* r->result = {group, members, message} (+ the pairs of extra, taken
 * over); message null when msg is NULL. extra_member as in member_ids. */
static int group_answer(sq *b, store_req *r, const group_row *g, json_t *msg, int64_t extra_member,
                        json_t *extra)
{
    json_t *members = member_ids(b, g->id, extra_member);
    json_t *group = group_json(g);
    r->result = members && group ? json_pack("{s:o, s:o, s:o}", "group", group, "members", members,
                                             "message", msg ? msg : json_null())
                                 : NULL;
    if (!r->result) {
        json_decref(members);
        json_decref(group);
        json_decref(msg);
    }
    if (r->result && extra && json_object_update(r->result, extra) != 0) {
        json_decref(r->result);
        r->result = NULL;
    }
    json_decref(extra);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* A user id of r->members: an integer or a decimal string; 0 for anything
 * else (no user has it). */
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

/* The distinct ids of r->members except skip, in their order, into *out
 * (malloc'd). -1 on OOM or a members that is no array. */
static int member_list(const store_req *r, int64_t skip, int64_t **out, size_t *n)
{
    *n = 0;
    *out = NULL;
    if (!r->members)
        return 0;
    if (!json_is_array(r->members))
        return -1;
    size_t len = json_array_size(r->members);
    *out = malloc((len ? len : 1) * sizeof(**out));
    if (!*out)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int64_t id = member_id_of(json_array_get(r->members, i));
        bool seen = id == skip;
        /* quadratic, but the chat service bounds members by --max-group-members */
        for (size_t j = 0; j < *n && !seen; j++)
            seen = (*out)[j] == id;
        if (!seen)
            (*out)[(*n)++] = id;
    }
    return 0;
}

/* Whether user id may be made a member (exists, enabled); its
 * {userid, username} appended to users. STORE_OK, NOT_FOUND or ERROR. */
static int member_candidate(sq *b, int64_t id, json_t *users)
{
    sqlite3_stmt *st = prep(b, ST_USER_ACTIVE);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int status = STORE_OK;
    if (rc == SQLITE_ROW) {
        if (json_array_append_new(users, json_pack("{s:I, s:s}", "userid", (json_int_t)id,
                                                   "username", col_text(st, 0))) != 0)
            status = STORE_ERROR;
    } else {
        status = rc == SQLITE_DONE ? STORE_NOT_FOUND : db_fail(b, "member user lookup");
    }
    sqlite3_reset(st);
    return status;
}

static bool over_limit(int64_t count, int64_t max_members)
{
    return max_members > 0 && count > max_members;
}

static int op_group_create(sq *b, store_req *r)
{
    if (!r->name)
        return bad_input(r, "name");
    int64_t *ids;
    size_t n;
    if (member_list(r, r->user_id, &ids, &n) != 0)
        return bad_input(r, "members as an array");
    json_t *users = json_array();
    int status = users ? STORE_OK : STORE_ERROR;
    if (status == STORE_OK && over_limit((int64_t)n + 1, r->max_members))
        status =
            group_err(r, STORE_CONFLICT, "group_full", "The group would have too many members.");
    user_entry *owner;
    if (status == STORE_OK) {
        status = user_get(b, r->user_id, &owner);
        if (status == STORE_NOT_FOUND)
            status = group_err(r, STORE_NOT_FOUND, "not_found", "No such user.");
    }
    for (size_t i = 0; i < n && status == STORE_OK; i++) {
        status = member_candidate(b, ids[i], users);
        if (status == STORE_NOT_FOUND)
            status = group_err(r, STORE_NOT_FOUND, "not_found", "A member is not a user.");
    }
    if (status != STORE_OK) {
        free(ids);
        json_decref(users);
        return status;
    }
    /* checked: from here on only writes */
    group_row g = {.owner_id = r->user_id,
                   .created_at = r->time,
                   .member_count = (int64_t)n + 1,
                   .name = strdup(r->name),
                   .avatar = strdup(r->avatar ? r->avatar : "")};
    sqlite3_stmt *st = prep(b, ST_GROUP_INSERT);
    bind_text(st, 1, g.name);
    bind_text(st, 2, g.avatar);
    sqlite3_bind_int64(st, 3, g.owner_id);
    sqlite3_bind_int64(st, 4, g.created_at);
    if (!g.name || !g.avatar) {
        status = STORE_ERROR;
        json_decref(users);
    } else if (exec_stmt(st) != SQLITE_DONE) {
        status = db_fail(b, "group insert");
        json_decref(users);
    } else {
        g.id = sqlite3_last_insert_rowid(b->db);
        json_t *extra = json_pack("{s:s, s:s}", "name", g.name, "avatar", g.avatar);
        json_t *msg = NULL;
        status = group_post_system(b, r, &g, system_data("create", r->user_id, users, extra), &msg);
        member_row m = {.role = STORE_GROUP_ROLE_OWNER, .joined_seq = 1, .read_seq = 1};
        if (status == STORE_OK)
            status = member_save(b, g.id, r->user_id, &m);
        m.role = STORE_GROUP_ROLE_MEMBER;
        m.read_seq = 0;
        for (size_t i = 0; i < n && status == STORE_OK; i++) {
            m.join_order = (int64_t)i + 1;
            status = member_save(b, g.id, ids[i], &m);
        }
        if (status == STORE_OK)
            status = group_save(b, &g);
        if (status == STORE_OK)
            status = group_answer(b, r, &g, msg, 0, NULL);
        else
            json_decref(msg);
    }
    group_row_free(&g);
    free(ids);
    return status;
}

static json_t *member_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:o, s:s}", "userid", (json_int_t)sqlite3_column_int64(st, 0),
                     "username", col_text(st, 1), "userpic", col_text(st, 2), "last_seen",
                     last_seen_json(st, 3), "role", role_name(sqlite3_column_int(st, 5)));
}

static int op_group_info(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    json_t *members;
    if (m.left_seq > 0) {
        members = json_array();
    } else {
        sqlite3_stmt *st = prep(b, ST_MEMBER_LIST);
        sqlite3_bind_int64(st, 1, g.id);
        members = rows_json(b, st, member_json);
    }
    r->result = group_json(&g);
    group_row_free(&g);
    if (!r->result || !members ||
        json_object_update_new(r->result,
                               json_pack("{s:s, s:b, s:I, s:b, s:o}", "role", role_name(m.role),
                                         "muted", m.muted, "joined_seq", (json_int_t)m.joined_seq,
                                         "left", m.left_seq > 0, "members", members)) != 0) {
        json_decref(r->result);
        r->result = NULL;
        return STORE_ERROR;
    }
    return STORE_OK;
}

static int op_group_add(sq *b, store_req *r)
{
    group_row g;
    member_row actor;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    int64_t *ids = NULL;
    size_t n = 0, fresh = 0;
    json_t *users = json_array();
    if (actor.role == STORE_GROUP_ROLE_MEMBER)
        status =
            group_err(r, STORE_FORBIDDEN, "forbidden", "Only the owner and admins add members.");
    else if (!users || member_list(r, 0, &ids, &n) != 0)
        status = bad_input(r, "members as an array");
    /* the users not members now, first in ids[0..fresh) */
    for (size_t i = 0; i < n && status == STORE_OK; i++) {
        member_row m;
        status = member_load(b, g.id, ids[i], &m);
        if (status == STORE_OK && m.found && m.left_seq == 0)
            continue;
        if (status == STORE_OK)
            status = member_candidate(b, ids[i], users);
        if (status == STORE_NOT_FOUND)
            status = group_err(r, STORE_NOT_FOUND, "not_found", "A member is not a user.");
        ids[fresh++] = ids[i];
    }
    if (status == STORE_OK && fresh > 0 &&
        over_limit(g.member_count + (int64_t)fresh, r->max_members))
        status =
            group_err(r, STORE_CONFLICT, "group_full", "The group would have too many members.");
    json_t *added = status == STORE_OK ? json_array() : NULL;
    for (size_t i = 0; added && i < fresh; i++) {
        if (json_array_append_new(added, json_integer(ids[i])) != 0) {
            json_decref(added);
            added = NULL;
        }
    }
    if (status == STORE_OK && !added)
        status = STORE_ERROR;
    if (status != STORE_OK || fresh == 0) {
        json_decref(users);
        if (status == STORE_OK) /* all were members: nothing changes */
            status = group_answer(b, r, &g, NULL, 0, json_pack("{s:o}", "added", added));
        else
            json_decref(added);
        group_row_free(&g);
        free(ids);
        return status;
    }
    json_t *msg = NULL;
    status = group_post_system(b, r, &g, system_data("add", r->user_id, users, NULL), &msg);
    member_row m = {.role = STORE_GROUP_ROLE_MEMBER, .joined_seq = g.last_seq};
    for (size_t i = 0; i < fresh && status == STORE_OK; i++) {
        m.join_order = (int64_t)i;
        status = member_save(b, g.id, ids[i], &m);
    }
    actor.read_seq = g.last_seq;
    g.member_count += (int64_t)fresh;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK) {
        status = group_answer(b, r, &g, msg, 0, json_pack("{s:o}", "added", added));
    } else {
        json_decref(msg);
        json_decref(added);
    }
    group_row_free(&g);
    free(ids);
    return status;
}

static int op_group_remove(sq *b, store_req *r)
{
    group_row g;
    member_row actor, peer;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role == STORE_GROUP_ROLE_MEMBER || r->peer_id == r->user_id)
        status = group_err(r, STORE_FORBIDDEN, "forbidden",
                           actor.role == STORE_GROUP_ROLE_MEMBER
                               ? "Only the owner and admins remove members."
                               : "You cannot remove yourself; leave the group instead.");
    else
        status = member_load(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK && (!peer.found || peer.left_seq > 0))
        status = group_err(r, STORE_CONFLICT, "not_in_group", "That user is not a member.");
    else if (status == STORE_OK && actor.role == STORE_GROUP_ROLE_ADMIN &&
             peer.role != STORE_GROUP_ROLE_MEMBER)
        status = group_err(r, STORE_FORBIDDEN, "forbidden", "An admin removes members only.");
    json_t *who = status == STORE_OK ? user_ref(b, r->peer_id) : NULL;
    if (status == STORE_OK && !who)
        status = STORE_ERROR;
    if (status != STORE_OK) {
        group_row_free(&g);
        return status;
    }
    json_t *msg = NULL;
    status = group_post_system(
        b, r, &g, system_data("remove", r->user_id, json_pack("[o]", who), NULL), &msg);
    peer.left_seq = g.last_seq;
    actor.read_seq = g.last_seq;
    g.member_count--;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, r->peer_id, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

static int op_group_leave(sq *b, store_req *r)
{
    group_row g;
    member_row me;
    int status = group_open(b, r, &g, &me, true, true);
    if (status != STORE_OK)
        return status;
    /* the owner leaving hands the group to the earliest-joined admin, else
     * member */
    int64_t heir = 0;
    if (me.role == STORE_GROUP_ROLE_OWNER) {
        sqlite3_stmt *st = prep(b, ST_SUCCESSOR);
        sqlite3_bind_int64(st, 1, g.id);
        sqlite3_bind_int64(st, 2, r->user_id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            heir = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            status = db_fail(b, "group successor");
    }
    json_t *who = status == STORE_OK ? user_ref(b, r->user_id) : NULL;
    if (status != STORE_OK || !who) {
        group_row_free(&g);
        return STORE_ERROR;
    }
    json_t *extra = heir ? json_pack("{s:I}", "owner", (json_int_t)heir) : NULL;
    json_t *msg = NULL;
    status = group_post_system(
        b, r, &g, system_data("leave", r->user_id, json_pack("[o]", who), extra), &msg);
    me.left_seq = g.last_seq;
    me.read_seq = g.last_seq;
    g.member_count--;
    if (g.member_count <= 0)
        g.dissolved = true; /* the last member left */
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &me);
    if (status == STORE_OK && heir) {
        member_row h;
        status = member_load(b, g.id, heir, &h);
        h.role = STORE_GROUP_ROLE_OWNER;
        g.owner_id = heir;
        if (status == STORE_OK)
            status = member_save(b, g.id, heir, &h);
    }
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status =
            group_answer(b, r, &g, msg, r->user_id, json_pack("{s:b}", "dissolved", g.dissolved));
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

static int op_group_update(sq *b, store_req *r)
{
    group_row g;
    member_row actor;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role == STORE_GROUP_ROLE_MEMBER) {
        group_row_free(&g);
        return group_err(r, STORE_FORBIDDEN, "forbidden",
                         "Only the owner and admins change the group.");
    }
    json_t *extra = json_object();
    bool name = r->name && strcmp(r->name, g.name) != 0;
    bool avatar = r->avatar && strcmp(r->avatar, g.avatar) != 0;
    if (!extra || (name && json_object_set_new(extra, "name", json_string(r->name)) != 0) ||
        (avatar && json_object_set_new(extra, "avatar", json_string(r->avatar)) != 0)) {
        json_decref(extra);
        group_row_free(&g);
        return STORE_ERROR;
    }
    if (!name && !avatar) {
        json_decref(extra);
        status = group_answer(b, r, &g, NULL, 0, NULL);
        group_row_free(&g);
        return status;
    }
    char *new_name = name ? strdup(r->name) : NULL, *new_avatar = avatar ? strdup(r->avatar) : NULL;
    if ((name && !new_name) || (avatar && !new_avatar)) {
        free(new_name);
        free(new_avatar);
        json_decref(extra);
        group_row_free(&g);
        return STORE_ERROR;
    }
    if (name) {
        free(g.name);
        g.name = new_name;
    }
    if (avatar) {
        free(g.avatar);
        g.avatar = new_avatar;
    }
    json_t *msg = NULL;
    status =
        group_post_system(b, r, &g, system_data("update", r->user_id, json_array(), extra), &msg);
    actor.read_seq = g.last_seq;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, 0, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

static int op_group_role(sq *b, store_req *r)
{
    if (r->action < STORE_GROUP_ROLE_MEMBER || r->action > STORE_GROUP_ROLE_OWNER)
        return bad_input(r, "a known group role");
    group_row g;
    member_row actor, peer;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role != STORE_GROUP_ROLE_OWNER)
        status = group_err(r, STORE_FORBIDDEN, "forbidden", "Only the owner changes roles.");
    else if (r->peer_id == r->user_id)
        status =
            group_err(r, STORE_FORBIDDEN, "forbidden", "The owner cannot change its own role.");
    else
        status = member_load(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK && (!peer.found || peer.left_seq > 0))
        status = group_err(r, STORE_CONFLICT, "not_in_group", "That user is not a member.");
    json_t *who = status == STORE_OK ? user_ref(b, r->peer_id) : NULL;
    if (status == STORE_OK && !who)
        status = STORE_ERROR;
    if (status != STORE_OK) {
        group_row_free(&g);
        return status;
    }
    json_t *msg = NULL;
    status = group_post_system(b, r, &g,
                               system_data("role", r->user_id, json_pack("[o]", who),
                                           json_pack("{s:s}", "role", role_name(r->action))),
                               &msg);
    peer.role = r->action;
    actor.read_seq = g.last_seq;
    if (r->action == STORE_GROUP_ROLE_OWNER) {
        actor.role = STORE_GROUP_ROLE_ADMIN;
        g.owner_id = r->peer_id;
    }
    if (status == STORE_OK)
        status = member_save(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, 0, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

static int op_group_dissolve(sq *b, store_req *r)
{
    group_row g;
    member_row actor;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role != STORE_GROUP_ROLE_OWNER) {
        group_row_free(&g);
        return group_err(r, STORE_FORBIDDEN, "forbidden", "Only the owner dissolves the group.");
    }
    json_t *msg = NULL;
    status =
        group_post_system(b, r, &g, system_data("dissolve", r->user_id, json_array(), NULL), &msg);
    actor.read_seq = g.last_seq;
    g.dissolved = true;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, 0, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

static int op_group_mute(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    bool muted = r->action != 0;
    if (m.muted != muted) {
        m.muted = muted;
        status = member_save(b, g.id, r->user_id, &m);
    }
    int64_t total = status == STORE_OK ? unread_all(b, r->user_id) : -1;
    if (total >= 0)
        r->result = json_pack("{s:I, s:b, s:I}", "group_id", (json_int_t)g.id, "muted", muted,
                              "total", (json_int_t)total);
    group_row_free(&g);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* ONE message row, the group's row and the sender's member row, whatever
 * the group's size. */
static int op_group_send(sq *b, store_req *r)
{
    if (!r->msg_type || !r->msg_data)
        return bad_input(r, "msg_type/msg_data");
    group_row g;
    member_row me;
    int status = group_open(b, r, &g, &me, true, true);
    if (status != STORE_OK)
        return status;
    json_t *msg = NULL;
    bool dup = false;
    status = group_post(b, &g, r->user_id, r->msg_type, r->msg_data, r->client_msg_id, r->time,
                        &msg, &dup);
    if (status == STORE_OK && !dup) {
        me.read_seq = g.last_seq;
        status = member_save(b, g.id, r->user_id, &me);
        if (status == STORE_OK)
            status = group_save(b, &g);
    }
    json_t *members = status == STORE_OK ? member_ids(b, g.id, 0) : NULL;
    group_row_free(&g);
    if (status == STORE_OK && members) {
        r->result = json_pack("{s:o, s:o}", "message", msg, "members", members);
        r->duplicate = dup;
        return r->result ? STORE_OK : STORE_ERROR;
    }
    json_decref(msg);
    json_decref(members);
    return status == STORE_OK ? STORE_ERROR : status;
}

static int op_group_history(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    sqlite3_stmt *st = prep(b, ST_GROUP_HISTORY);
    sqlite3_bind_int64(st, 1, g.id);
    sqlite3_bind_int64(st, 2, r->before > 0 ? r->before : INT64_MAX);
    sqlite3_bind_int64(st, 3, sql_limit(r->limit));
    sqlite3_bind_int64(st, 4, m.joined_seq);
    sqlite3_bind_int64(st, 5, m.left_seq > 0 ? m.left_seq : INT64_MAX);
    r->result = rows_json(b, st, msg_json);
    group_row_free(&g);
    return r->result ? STORE_OK : STORE_ERROR;
}

static int op_group_read(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    int64_t unread = member_unread(g.last_seq, m.joined_seq, m.left_seq, m.read_seq);
    int64_t read = m.read_seq > m.joined_seq - 1 ? m.read_seq : m.joined_seq - 1;
    if (unread > 0) {
        m.read_seq = read = member_upper(g.last_seq, m.left_seq);
        status = member_save(b, g.id, r->user_id, &m);
    }
    int64_t total = status == STORE_OK ? unread_all(b, r->user_id) : -1;
    if (total >= 0)
        r->result = json_pack("{s:I, s:b, s:I}", "total", (json_int_t)total, "changed", unread > 0,
                              "last_read_seq", (json_int_t)read);
    group_row_free(&g);
    return r->result ? STORE_OK : STORE_ERROR;
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
         r->op == STORE_READ || r->op == STORE_UNREAD || r->op == STORE_PRESENCE_PEERS ||
         r->op == STORE_GROUP_READ || r->op == STORE_GROUP_MUTE) &&
        conv_flush(b) != 0) {
        r->status = STORE_ERROR;
        return;
    }
    switch (r->op) {
    case STORE_USER_CREATE:
        r->status = op_user_create(b, r);
        break;
    case STORE_USER_BY_NAME:
        r->status = op_user_by_name(b, r);
        break;
    case STORE_USER_BY_ID:
        r->status = op_user_by_id(b, r);
        break;
    case STORE_USER_EXTERNAL:
        r->status = op_user_external(b, r);
        break;
    case STORE_USER_SEARCH:
        r->status = op_user_search(b, r);
        break;
    case STORE_TOKEN_CREATE:
        r->status = op_token_create(b, r);
        break;
    case STORE_TOKEN_LOOKUP:
        r->status = op_token_lookup(b, r);
        break;
    case STORE_TOKEN_DELETE:
        r->status = op_token_delete(b, r);
        break;
    case STORE_JWT_REVOKE:
        r->status = op_jwt_revoke(b, r);
        break;
    case STORE_MESSAGE_SEND:
        r->status = op_message_send(b, r);
        break;
    case STORE_CHAT_LIST:
        r->status = op_chat_list(b, r);
        break;
    case STORE_HISTORY:
        r->status = op_history(b, r);
        break;
    case STORE_SYNC:
        r->status = op_sync(b, r);
        break;
    case STORE_SYNC_CURSORS:
        r->status = op_sync_cursors(b, r);
        break;
    case STORE_READ:
        r->status = op_read(b, r);
        break;
    case STORE_UNREAD:
        r->status = op_unread(b, r);
        break;
    case STORE_USER_ADMIN:
        r->status = op_user_admin(b, r);
        break;
    case STORE_TOKEN_PURGE:
        r->status = op_token_purge(b, r);
        break;
    case STORE_USER_LAST_SEEN:
        r->status = op_last_seen(b, r);
        break;
    case STORE_USER_SETTINGS:
        r->status = op_user_settings(b, r);
        break;
    case STORE_PRESENCE_PEERS:
        r->status = op_presence_peers(b, r);
        break;
    case STORE_GROUP_CREATE:
        r->status = op_group_create(b, r);
        break;
    case STORE_GROUP_INFO:
        r->status = op_group_info(b, r);
        break;
    case STORE_GROUP_ADD:
        r->status = op_group_add(b, r);
        break;
    case STORE_GROUP_REMOVE:
        r->status = op_group_remove(b, r);
        break;
    case STORE_GROUP_LEAVE:
        r->status = op_group_leave(b, r);
        break;
    case STORE_GROUP_UPDATE:
        r->status = op_group_update(b, r);
        break;
    case STORE_GROUP_ROLE:
        r->status = op_group_role(b, r);
        break;
    case STORE_GROUP_DISSOLVE:
        r->status = op_group_dissolve(b, r);
        break;
    case STORE_GROUP_MUTE:
        r->status = op_group_mute(b, r);
        break;
    case STORE_GROUP_SEND:
        r->status = op_group_send(b, r);
        break;
    case STORE_GROUP_HISTORY:
        r->status = op_group_history(b, r);
        break;
    case STORE_GROUP_READ:
        r->status = op_group_read(b, r);
        break;
    default:
        r->status = bad_input(r, "a known op");
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
    if (exec_stmt(b->st[write ? ST_BEGIN_WRITE : ST_BEGIN_READ]) != SQLITE_DONE) {
        db_fail(b, "begin");
        return -1;
    }
    return 0;
}

static int sq_commit(void *p)
{
    sq *b = p;
    if (conv_flush(b) != 0)
        return -1;
    if (exec_stmt(b->st[ST_COMMIT]) != SQLITE_DONE) {
        db_fail(b, "commit");
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
    if (!sqlite3_get_autocommit(b->db) && exec_stmt(b->st[ST_ROLLBACK]) != SQLITE_DONE)
        db_fail(b, "rollback");
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
    bool ok = exec_stmt(b->st[ST_BEGIN_WRITE]) == SQLITE_DONE;
    if (ok && purge(b, now, STORE_PURGE_BATCH, &tokens, &jwts) == 0 &&
        exec_stmt(b->st[ST_COMMIT]) == SQLITE_DONE) {
        if (tokens || jwts)
            log_debug("store: purged %lld expired tokens, %lld revoked JWTs", (long long)tokens,
                      (long long)jwts);
    } else {
        if (!sqlite3_get_autocommit(b->db))
            exec_stmt(b->st[ST_ROLLBACK]);
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
            snprintf(out, out_len, "%s", col_text(st, 0));
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
            names[n++] = strdup(col_text(sel, 1));
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
            rc = exec_stmt(up);
            free(key);
            if (is_constraint(rc) && names[i]) {
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
                rc = exec_stmt(up);
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
