/* store: the chat service's storage, behind one small interface.
 *
 * Every operation is a store_req submitted from the event loop thread and
 * completed back on it: the caller fills the inputs, calls store_submit, and
 * later its done callback runs on the loop thread with status and result.
 * Disk work never runs on the loop thread (except opening the database and
 * migrating its schema, in store_open at startup). One storage thread
 * (store.c) takes every request queued since its last pass, answers reads,
 * and commits all writes of the pass in ONE transaction (group commit); a
 * write's done callback runs only after that transaction committed, so an
 * acknowledged message is on disk. Should the transaction fail, each
 * request of the pass is retried alone, so only the failing ones answer
 * STORE_ERROR. Done callbacks run in submission order (with PostgreSQL:
 * those of the writes; reads run beside them, see store_open_opts).
 *
 * The SQLite backend (store_sqlite.c) keeps <data_dir>/chatd.db in WAL mode
 * and caches users, so one chatd process owns a data directory; the
 * PostgreSQL backend (store_pg.c) for multi-node deployments implements the
 * same operations with the same results (store_backend.h), with reads on
 * their own threads (see store_open_opts).
 *
 * Ownership: the caller allocates a request with store_req_new and owns it
 * again when done runs (free it with store_req_free, which also frees the
 * string inputs and the result). Between submit and done the store owns it.
 * String inputs are copied in with store_req_set_str.
 *
 * Users are {id, username, userpic}, userpic "" when none was given;
 * messages are {id, seq, to_id, from_id, from_username, from_userpic, type,
 * data, time, client_msg_id}: from_* are the sender's current name and
 * picture, client_msg_id is null when none was given. Message ids are 64-bit
 * integers that grow over time. Four more keys appear only when they apply:
 * "width" and "height" (an image's size, when its sender gave it),
 * "recalled": true (STORE_MESSAGE_RECALL: data is "" and the size is gone)
 * and "deleted": true (the reading user hid it, STORE_MESSAGE_DELETE: data
 * "" for that user only). Every answer that holds messages or a chat list
 * item's last message (history, both syncs, the chat list) carries them.
 *
 * seq is the message's position in its conversation: 1, 2, 3, ... with no
 * holes, in commit order. Every backend assigns it inside the committing
 * transaction under a lock that only writers of that conversation share, and
 * allocates the message id under the same lock, so within one conversation
 * seq order = id order = commit order (across conversations, ids may commit
 * out of order on a multi-writer backend: cursors are per conversation).
 * A limit <= 0 means no limit. */
#ifndef CHATD_STORE_H
#define CHATD_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct store store;
typedef struct store_req store_req;
typedef void (*store_done_fn)(store_req *r);

enum store_status {
    STORE_OK = 0,
    STORE_NOT_FOUND = 1, /* the user / token / message asked for does not exist */
    STORE_CONFLICT = 2,  /* a unique value (username) is taken */
    STORE_ERROR = -1,    /* I/O or database failure: answer 500 */
    /* The database cannot be reached now (a networked backend lost its
     * connection, or the outcome of a COMMIT is unknown): answer 503
     * store_unavailable; the client retries (idempotent by client_msg_id). */
    STORE_UNAVAILABLE = -2,
    /* Group operations only: the user may not do this (not a member, or a
     * role without the right). result says why: {"code", "message"}. */
    STORE_FORBIDDEN = 3,
};

/* Operations, their inputs and the JSON they leave in result. */
typedef enum store_op {
    /* username, password_hash, userpic, time -> user. CONFLICT: username taken
     * (usernames are unique by their key, names_key in chat/names.h: case,
     * NFD/NFC, fullwidth forms and confusable letters do not make a new
     * name). The caller has checked the name (names_clean). */
    STORE_USER_CREATE,
    /* username (any spelling with the same key) -> user plus "password_hash"
     * (null for external users) and "disabled" (bool). NOT_FOUND. */
    STORE_USER_BY_NAME,
    /* user_id -> user. NOT_FOUND. */
    STORE_USER_BY_ID,
    /* external_id (a JWT "sub"), username, userpic, time -> user: created on
     * first sight, username/userpic refreshed later. A username whose key
     * another user holds gets "#<external_id>" appended, or, when that is
     * held too, "#x<external_id in hex>"; never CONFLICT. When token_hash is
     * set (not all zero) and that JWT was revoked (STORE_JWT_REVOKE) and has
     * not expired by time: NOT_FOUND, nothing written. NOT_FOUND too, for
     * an existing user, when it is disabled or when issued_at (the JWT's
     * iat, ms; 0 when it has none) is before its last revoke
     * (STORE_USER_ADMIN): a revoke cannot delete a JWT, so it refuses every
     * JWT issued before it. */
    STORE_USER_EXTERNAL,
    /* query, user_id (excluded from results), limit -> [user plus
     * last_seen, as in STORE_CHAT_LIST]: the enabled
     * users whose username key (names_key) starts with query's key, in key
     * order. A range seek on the key's index (never a scan of users): case,
     * NFD/NFC, fullwidth forms and look-alike letters are ignored, but only
     * prefixes match ("ali" finds "Alice", not "Malice"). */
    STORE_USER_SEARCH,
    /* token_hash, user_id, expires (ms), password_hash (may be NULL) ->
     * null. NOT_FOUND: no such user, the user is disabled
     * (STORE_USER_ADMIN), or password_hash is given and is no longer the
     * user's (a login that checked the password a change replaced: its
     * token must not outlive the change); CONFLICT: the hash exists. */
    STORE_TOKEN_CREATE,
    /* token_hash, time (ms, now) -> user plus "expires" (ms), when the token
     * exists, expires > time and its user is not disabled. NOT_FOUND
     * otherwise. */
    STORE_TOKEN_LOOKUP,
    /* token_hash -> null (NOT_FOUND when there was none). */
    STORE_TOKEN_DELETE,
    /* token_hash (SHA-256 of a JWT), expires (ms, the JWT's exp), time (ms,
     * now) -> null. Puts the JWT on the revocation list until expires
     * (logout); STORE_USER_EXTERNAL given that token_hash answers NOT_FOUND
     * from then on, also after a restart. Purges entries past their expiry. */
    STORE_JWT_REVOKE,
    /* user_id (sender), peer_id (recipient), msg_type, msg_data,
     * client_msg_id (may be NULL), time (ms), width/height (0 = none) ->
     * message. In one transaction:
     * stores the message, moves both users' conversation to it, and adds one
     * to the recipient's unread count. When client_msg_id is set and this
     * sender already stored a message with it, nothing is written, result is
     * that stored message and `duplicate` is true. NOT_FOUND: no such
     * recipient (or sender). */
    STORE_MESSAGE_SEND,
    /* user_id -> [{chat_type: "single", userid, username, userpic, type,
     * data, time, noreadnum, last_message_id, last_seq, last_seen}] and
     * [{chat_type: "group", group_id, name, avatar, type, data, time,
     * noreadnum, last_message_id, last_seq, from_id, from_username, muted,
     * role, member_count, dissolved, left}] in one list, the most recent
     * conversation first (by last_message_id); last_seq is the seq of the
     * conversation's newest message (of a group: the newest the user may
     * see); last_seen is the peer's (ms), null when the peer hides it or
     * was never seen offline. A group item's type/data/time/from_* are
     * those of that newest message; left is true once the user left or was
     * removed (the item stays, read-only), and then name, avatar,
     * member_count and dissolved are the group's as of its leaving (see
     * "Groups"). */
    STORE_CHAT_LIST,
    /* user_id, peer_id, before (exclusive; 0 = from the newest), limit ->
     * [message] of that conversation, newest first. */
    STORE_HISTORY,
    /* user_id, after (exclusive), limit -> [message] to or from the user,
     * oldest first. By message id: exact with one writer (SQLite); with
     * several writers an id can commit after a larger one was read, so
     * clients use STORE_SYNC_CURSORS. */
    STORE_SYNC,
    /* user_id, cursors (a JSON object: peer user id as a decimal string,
     * or "g" and a group id, -> the last seq the client holds of that
     * conversation; owned by the request), limit -> {conversations:
     * [{userid | group_id, messages: [message, oldest first, seq > cursor],
     * more}]}: every conversation of the user (groups: each it is or was a
     * member of, within its seq range) whose newest seq is above its cursor
     * (0 when absent from cursors), the most recent conversation first;
     * limit bounds the messages of the whole answer, and a conversation cut
     * by it says more: true. With want_deleted, the answer also holds
     * "deleted": {message_ids, cursor, more}: the ids the user hid
     * (STORE_MESSAGE_DELETE) with a hide cursor above deleted_after, at most
     * STORE_DELETED_PAGE, oldest first; cursor is the last one's (or
     * deleted_after when none). */
    STORE_SYNC_CURSORS,
    /* user_id, peer_id -> {total, last_read_id, changed}: the conversation's
     * unread count becomes 0; total is the user's unread sum afterwards
     * (groups included, muted ones not, as everywhere a total is given);
     * last_read_id is the newest message id from peer to user (0 if none);
     * changed is false when nothing was unread (or there is no conversation).
     * NOT_FOUND: no such peer user. */
    STORE_READ,
    /* user_id -> {total, conversations:[{userid, noreadnum}], groups:
     * [{group_id, noreadnum, muted}]} (noreadnum > 0); total leaves muted
     * groups out. */
    STORE_UNREAD,
    /* user_id, action, time (ms, now) -> {tokens_deleted, disabled}.
     * REVOKE and DISABLE set the user's tokens-not-before time to time (it
     * never moves back), so its JWTs issued before time are refused
     * (STORE_USER_EXTERNAL), and delete every login token of the user;
     * DISABLE also disables the account (STORE_TOKEN_CREATE and
     * STORE_TOKEN_LOOKUP refuse it, its JWTs are refused whatever their
     * iat, search leaves it out). ENABLE enables it again and nothing more:
     * the tokens deleted stay deleted, the JWTs issued before the last
     * revoke stay refused. NOT_FOUND: no such user. */
    STORE_USER_ADMIN,
    /* time (ms, now), limit -> {tokens, jwts}: deletes at most limit login
     * tokens expired by time, and at most limit revoked-JWT entries past
     * their expiry, oldest expiry first (an index seek, never a scan). The
     * store runs it by itself in the background (store_options
     * purge_interval_ms); a request is for tests and tools. */
    STORE_TOKEN_PURGE,
    /* user_id, time (ms) -> null: the user was last seen (went offline) at
     * time; last_seen never moves back. NOT_FOUND: no such user. */
    STORE_USER_LAST_SEEN,
    /* user_id, action (1: hide last_seen from others, 0: show it) ->
     * {hide_last_seen}. NOT_FOUND: no such user. */
    STORE_USER_SETTINGS,
    /* user_id -> {hide_last_seen, last_seen, peers: [user id]}: the user's
     * setting and stored last_seen (0 = never), and who is told of the
     * user's presence: the peers of its 1:1 conversations and the current
     * members of the groups it is a member of (not dissolved), each once.
     * NOT_FOUND: no such user. */
    STORE_PRESENCE_PEERS,
    /* user_id, password_hash (the new one), token_hash (the caller's login
     * token, kept), time (ms, now) -> {tokens_deleted}: the user's password
     * becomes password_hash and every other login token of the user is
     * deleted, in one transaction. NOT_FOUND: no such user, a user without
     * a password (an external one), or token_hash is not a live token of
     * this user (logged out or revoked meanwhile: nothing is written). */
    STORE_USER_PASSWORD,
    /* user_id, userpic ("" = none) -> user. NOT_FOUND: no such user. */
    STORE_USER_PROFILE,
    /* user_id, message_id, time (ms, now), recall_window (ms) -> {message,
     * notice, peer_id | members}: the sender withdraws its message. In one
     * transaction: the message's data is emptied, its size dropped and it
     * is marked recalled; a notice is appended to its conversation (type
     * "recall", from the user, data {"message_id":<id>}, the next seq, no
     * unread for anyone: 1:1 it moves both conversations without counting,
     * in a group notices and recalled messages are left out of the computed
     * counts); and a recalled message the recipient had not read no longer
     * counts as unread (1:1: one less, if above its last read; groups: the
     * computed counts leave it out). peer_id is the 1:1 peer, members the
     * group's current member ids. A message already recalled: nothing
     * written, notice null. NOT_FOUND not_found: no such message or one the
     * user may not see; FORBIDDEN forbidden (not the sender, a system or
     * recall message), not_member (a group the user left); CONFLICT
     * group_dissolved, recall_window_passed (time > message time +
     * recall_window). Errors carry {code, message} as group operations. */
    STORE_MESSAGE_RECALL,
    /* user_id, message_ids (a JSON array of ids) -> {message_ids, cursor,
     * changed}: hides those of the messages the user may see (others are
     * left out) for the user only; each newly hidden id takes the next
     * value of the user's hide cursor (one counter per user, only growing),
     * cursor is its value afterwards; changed: something was newly hidden.
     * Unread counts are not changed. */
    STORE_MESSAGE_DELETE,

    /* ---- groups (see "Groups" below) ------------------------------------ */

    /* user_id (the owner), name, avatar (may be NULL), members (user ids
     * besides the owner; the owner and repeats are ignored), max_members,
     * time -> {group, members, message}: the group, owner role "owner", the
     * others "member", all with joined_seq 1; message is the system message
     * "create" (seq 1). NOT_FOUND {code not_found}: a member id is no user
     * (or a disabled one); CONFLICT {code group_full}: more than
     * max_members with the owner. */
    STORE_GROUP_CREATE,
    /* user_id, group_id -> group plus {role, muted, joined_seq, left: bool,
     * members: [{userid, username, userpic, role, last_seen}]} (current
     * members in join order; last_seen as in STORE_CHAT_LIST). A user that
     * left or was removed still gets the group (left true), but as it was
     * when it left (see "Groups": last_seq its left_seq, the name, avatar,
     * member_count, owner_id and dissolved of then), role the one it had,
     * and members []. NOT_FOUND: no such group; FORBIDDEN not_member:
     * never a member. */
    STORE_GROUP_INFO,
    /* user_id (actor), group_id, members (user ids to add), max_members,
     * time -> {group, members, message, added: [ids]}: adds the users that
     * are not members (again: a user who left or was removed may be added
     * back; from then on it sees the group from the new system message),
     * role "member"; one system message "add" naming them all, or message
     * null and added [] when all were members already. Owner and admins
     * only. NOT_FOUND (group or a user), FORBIDDEN (not_member, forbidden),
     * CONFLICT (group_full, group_dissolved). */
    STORE_GROUP_ADD,
    /* user_id (actor), group_id, peer_id (the member to remove), time ->
     * {group, members, message}: system message "remove"; members holds the
     * removed user too (it receives its removal, and nothing after). The
     * owner removes anyone but itself; an admin removes members only.
     * NOT_FOUND (group), FORBIDDEN (not_member, forbidden), CONFLICT
     * (not_in_group: peer is not a member, group_dissolved). */
    STORE_GROUP_REMOVE,
    /* user_id, group_id, time -> {group, members, message, dissolved}:
     * system message "leave"; members holds the leaver too. When the owner
     * leaves, the earliest-joined admin, else the earliest-joined member,
     * becomes owner (the message says so: "owner": id). The last member
     * leaving dissolves the group (dissolved true). NOT_FOUND, FORBIDDEN
     * (not_member), CONFLICT (group_dissolved). */
    STORE_GROUP_LEAVE,
    /* user_id (actor), group_id, name (NULL = unchanged), avatar (NULL =
     * unchanged, "" = none), time -> {group, members, message}: system
     * message "update" with the fields that changed; message null when
     * nothing changed. Owner and admins. Errors as STORE_GROUP_REMOVE. */
    STORE_GROUP_UPDATE,
    /* user_id (actor, the owner), group_id, peer_id, action (enum
     * store_group_role: the new role), time -> {group, members, message}:
     * system message "role" {users:[peer], role}. GROUP_ROLE_OWNER hands
     * ownership over: peer becomes owner and the actor an admin. Owner
     * only; the owner cannot change its own role this way. NOT_FOUND,
     * FORBIDDEN, CONFLICT (not_in_group, group_dissolved). */
    STORE_GROUP_ROLE,
    /* user_id (the owner), group_id, time -> {group, members, message}:
     * system message "dissolve"; the group takes no more messages or
     * changes (CONFLICT group_dissolved), its members keep reading its
     * history. Owner only. */
    STORE_GROUP_DISSOLVE,
    /* user_id, group_id, action (1 mute, 0 unmute) -> {group_id, muted,
     * total}: a muted group's unread count stays on its chat list item but
     * is left out of the total. NOT_FOUND, FORBIDDEN (not_member). */
    STORE_GROUP_MUTE,
    /* user_id (sender), group_id, msg_type, msg_data, client_msg_id (may be
     * NULL), time -> {message, members}: ONE stored row, whatever the
     * group's size; the sender's read position moves to it. A repeated
     * client_msg_id of this sender: nothing written, the stored message,
     * duplicate true (members still set, for the re-push). NOT_FOUND,
     * FORBIDDEN (not_member), CONFLICT (group_dissolved). */
    STORE_GROUP_SEND,
    /* user_id, group_id, before (message id, exclusive; 0 = newest), limit
     * -> [message] newest first, only those the user may see (its
     * membership's seq range). NOT_FOUND, FORBIDDEN (not_member). */
    STORE_GROUP_HISTORY,
    /* user_id, group_id -> {total, changed, last_read_seq}: the group's
     * unread count for this user becomes 0. NOT_FOUND, FORBIDDEN. */
    STORE_GROUP_READ,
    STORE_OP_COUNT
} store_op;

/* Groups.
 *
 * A group message is ONE row of the message table, whatever the group's
 * size: a conversation of its own (both backends key it conv_lo = 0,
 * conv_hi = group id; no user has id 0) with its own seq 1, 2, 3, ...
 * under the same rules as 1:1 conversations. Its JSON is a message with
 * "group_id" instead of "to_id". What a member sees is a seq range: from
 * joined_seq (the system message that made it a member; 1 for the group's
 * first members) to left_seq (the message that removed it or that it left
 * with, included), open while it is a member. Per member the store keeps
 * role, joined_seq, left_seq, read_seq and muted; the unread count is
 * computed, never counted per message: min(last_seq, left_seq or last_seq)
 * - max(read_seq, joined_seq - 1), less the recalled messages and recall
 * notices in that range (a seek on a partial index that holds only those,
 * STORE_MESSAGE_RECALL). Sending (and any change made by the
 * user, i.e. a system message it caused) moves the user's read_seq to that
 * message, so one message writes the message row, the group's last_seq and
 * the sender's member row: never a row per member.
 *
 * A group object is {group_id, name, avatar, owner_id, created_at,
 * member_count, dissolved, last_seq}. A member's role is "owner", "admin"
 * or "member".
 *
 * A departed member (left_seq > 0) gets nothing of the group after its
 * left_seq, its state included: STORE_GROUP_INFO and its STORE_CHAT_LIST
 * item show the group as it was right after the remove or leave message
 * (name, avatar, member_count, owner_id and dissolved as that change left
 * them: the member not counted, a leaving owner's successor named, the
 * group dissolved when it was the last), and last_seq = left_seq. The
 * member row keeps those values from its remove or leave (SQLite migration
 * 8, PostgreSQL 6); re-adding the member drops them, and it sees the live
 * group again. A member who left before those migrations has none: it is
 * answered the current name, avatar, member_count, owner_id and dissolved,
 * with last_seq still capped at its left_seq. The other answers a departed
 * member still gets (history, sync, unread, read) were already bounded by
 * its seq range.
 *
 * System messages have type "system", from_id the user who caused them, and
 * data a JSON object (as a string): {"event": "create" | "add" | "remove" |
 * "leave" | "update" | "role" | "dissolve", "actor": id, "users":
 * [{"userid", "username"}] (whom it is about: added, removed, the one who
 * left, the one whose role changed; [] for create's owner-only case... the
 * initial members for create), plus "name"/"avatar" (create, update),
 * "role" (role), "owner" (leave, when ownership passed)}.
 *
 * Errors of group operations set result {"code", "message"}: NOT_FOUND
 * not_found, FORBIDDEN not_member / forbidden, CONFLICT group_full /
 * group_dissolved / not_in_group. */
enum store_group_role {
    STORE_GROUP_ROLE_MEMBER = 0,
    STORE_GROUP_ROLE_ADMIN = 1,
    STORE_GROUP_ROLE_OWNER = 2,
};

enum store_admin_action {
    STORE_ADMIN_REVOKE = 0,  /* delete the user's tokens, refuse its older JWTs */
    STORE_ADMIN_DISABLE = 1, /* the same, and the account is disabled */
    STORE_ADMIN_ENABLE = 2,  /* the account is enabled again */
};

struct store_req {
    store_op op;
    store_done_fn done;
    void *ctx; /* the caller's */
    /* inputs */
    int64_t user_id, peer_id;
    int64_t before, after, limit;
    int64_t time, expires;
    uint8_t token_hash[32];
    char *username, *password_hash, *userpic, *external_id, *query;
    char *msg_type, *msg_data, *client_msg_id;
    json_t *cursors;       /* STORE_SYNC_CURSORS; store_req_free releases it */
    int64_t group_id;      /* group operations */
    json_t *members;       /* GROUP_CREATE / GROUP_ADD: array of user ids; freed with the request */
    char *name, *avatar;   /* GROUP_CREATE / GROUP_UPDATE */
    int64_t max_members;   /* GROUP_CREATE / GROUP_ADD */
    int action;            /* STORE_USER_ADMIN: enum store_admin_action */
    int64_t issued_at;     /* STORE_USER_EXTERNAL: the JWT's iat (ms), 0 = none */
    int64_t width, height; /* MESSAGE_SEND / GROUP_SEND: an image's size, 0 = none */
    int64_t message_id;    /* MESSAGE_RECALL */
    int64_t recall_window; /* MESSAGE_RECALL: ms after the message's time */
    json_t *message_ids;   /* MESSAGE_DELETE: array of ids; freed with the request */
    bool want_deleted;     /* SYNC_CURSORS: answer "deleted" too */
    int64_t deleted_after; /* SYNC_CURSORS with want_deleted: the client's hide cursor */
    /* outputs */
    int status;
    json_t *result;
    bool duplicate;
    /* internal: queue link */
    store_req *next;
};

enum store_durability {
    STORE_DURABLE_FULL = 0,   /* fsync every commit: safe against power loss */
    STORE_DURABLE_NORMAL = 1, /* WAL without fsync per commit: safe against a crash
                                 of chatd, not of the machine */
};

/* Where and how to store. */
typedef struct store_options {
    /* "sqlite" (or NULL/""): <data_dir>/chatd.db; or a PostgreSQL URI,
     * postgres://user:pass@host:port/db?sslmode=... (also postgresql://). */
    const char *store;
    const char *data_dir; /* SQLite only; NULL = "./data" */
    enum store_durability durability;
    /* PostgreSQL only: connections in all, >= 2: one runs the group-commit
     * writer, the others one reader thread each. SQLite uses one. */
    int connections;
    /* How often the writer purges expired tokens and revoked-JWT entries,
     * STORE_PURGE_BATCH rows of each per transaction (a full batch is
     * followed by the next one after the next pass, not after the
     * interval); 0 = STORE_PURGE_INTERVAL_MS, < 0 = never. */
    int purge_interval_ms;
} store_options;

#define STORE_PURGE_INTERVAL_MS 60000
/* Hidden ids in one STORE_SYNC_CURSORS "deleted" answer. */
#define STORE_DELETED_PAGE 1000
#define STORE_PURGE_BATCH 500

/* Whether uri is a PostgreSQL URI rather than "sqlite". */
bool store_is_postgres(const char *uri);

/* Opens the store o names: SQLite creates the database under data_dir if
 * needed; both migrate the schema (PostgreSQL: under an advisory lock, so
 * nodes starting together migrate once) and start the storage threads.
 * Completions are delivered on loop. NULL on failure with a message in err
 * (PostgreSQL: also when the server cannot be reached at start; later
 * outages answer STORE_UNAVAILABLE instead).
 *
 * Threads: one writer takes the queued requests (with SQLite, all of them;
 * with PostgreSQL, the writes) in passes, one transaction each (group
 * commit). With PostgreSQL, connections - 1 reader threads answer the
 * read-only requests on their own connections, so a slow read never delays
 * an ack. Done callbacks of the writer's requests run in submission order;
 * a read may be answered before a write submitted earlier (a client that
 * needs to read its own write submits the read after the write's answer,
 * which only comes after the commit). */
store *store_open_opts(uv_loop_t *loop, const store_options *o, char *err, size_t err_len);

/* The SQLite store under data_dir (store_open_opts with store "sqlite"). */
store *store_open(uv_loop_t *loop, const char *data_dir, enum store_durability durability,
                  char *err, size_t err_len);

/* 0 when the database answers, STORE_UNAVAILABLE while the writer's
 * connection is down (PostgreSQL; SQLite is always 0). Loop thread; cheap:
 * for /healthz. */
int store_health(store *s);

/* "sqlite" or "postgresql". */
const char *store_backend_name(store *s);

/* Queues a request; done runs later on the loop thread. The store keeps the
 * loop alive (a referenced handle) only while answers are owed. */
void store_submit(store *s, store_req *r);

/* Finishes every queued request, stops the thread, closes the database and
 * frees s. Call on the loop thread; completions still run before it returns
 * (also those of requests their done callbacks submit). It may be called
 * from a done callback. s's async handle is closed, not yet freed: run the
 * loop once more (as for any closed handle) before uv_loop_close. */
void store_close(store *s);

store_req *store_req_new(store_op op, store_done_fn done, void *ctx);
/* Replaces *field with a copy of value (NULL clears). Returns 0 or -1 on OOM. */
int store_req_set_str(char **field, const char *value);
void store_req_free(store_req *r);

/* Statistics for /healthz and the benchmark: transactions committed and
 * write requests they carried. */
void store_stats(store *s, uint64_t *commits, uint64_t *writes);

#endif
