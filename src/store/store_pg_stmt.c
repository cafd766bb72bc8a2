/* store_pg_stmt: each request's statement: the SQL of every op (pg_stmt_sql,
 * prepared once per connection) and its parameters built from a store_req
 * (pg_build, and one batch call for a run of sends). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/names.h"
#include "store/store_pg_internal.h"

#define SYNC_CURSORS_SQL                                                                           \
    "WITH cur AS (SELECT * FROM unnest($2::bigint[], $3::bigint[]) AS x(peer, seq)),"              \
    " conv0 AS (SELECT c.peer_id, c.last_message_id, t.last_seq,"                                  \
    "  coalesce(cur.seq, 0) AS cursor, t.conv_lo, t.conv_hi FROM conversations c"                  \
    "  JOIN threads t ON t.conv_lo = least(c.user_id, c.peer_id)"                                  \
    "   AND t.conv_hi = greatest(c.user_id, c.peer_id)"                                            \
    "  LEFT JOIN cur ON cur.peer = c.peer_id"                                                      \
    "  WHERE c.user_id = $1 AND t.last_seq > coalesce(cur.seq, 0)"                                 \
    "  UNION ALL"                                                                                  \
    "  SELECT -gm.group_id, CASE WHEN gm.left_seq > 0 AND gm.left_seq < t.last_seq THEN"           \
    "   (SELECT x.id FROM messages x WHERE x.conv_lo = 0 AND x.conv_hi = gm.group_id"              \
    "    AND x.seq = gm.left_seq) ELSE g.last_message_id END,"                                     \
    "   chatd_group_top(t.last_seq, gm.left_seq),"                                                 \
    "   greatest(coalesce(cur.seq, 0), gm.joined_seq - 1), 0, gm.group_id"                         \
    "  FROM group_members gm JOIN groups g ON g.id = gm.group_id"                                  \
    "  JOIN threads t ON t.conv_lo = 0 AND t.conv_hi = gm.group_id"                                \
    "  LEFT JOIN cur ON cur.peer = -gm.group_id"                                                   \
    "  WHERE gm.user_id = $1 AND chatd_group_top(t.last_seq, gm.left_seq)"                         \
    "   > greatest(coalesce(cur.seq, 0), gm.joined_seq - 1)),"                                     \
    " conv AS (SELECT conv0.*, CASE WHEN $4::bigint IS NULL THEN NULL ELSE"                        \
    "  greatest(0, $4::bigint - coalesce(sum(last_seq - cursor) OVER (ORDER BY"                    \
    "   last_message_id DESC, peer_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),"          \
    "   0)) END AS budget FROM conv0)"                                                             \
    " SELECT conv.peer_id, conv.last_seq, conv.cursor, " MSG_COLS_SEEN(                            \
        "$1") ","                                                                                  \
              " conv.last_message_id AS o_lm FROM conv"                                            \
              " LEFT JOIN LATERAL (SELECT m2.* FROM messages m2"                                   \
              "  WHERE conv.budget IS DISTINCT FROM 0 AND m2.conv_lo = conv.conv_lo"               \
              "  AND m2.conv_hi = conv.conv_hi AND m2.seq > conv.cursor AND m2.seq <= "            \
              "conv.last_seq"                                                                      \
              "  ORDER BY m2.seq LIMIT conv.budget) m ON true"                                     \
              " LEFT JOIN users u ON u.id = m.from_id"

/* A send run's extra columns: a duplicate's stored recalled, width and
 * height (NULLs on a new message's row), after the function's own. */
#define DUP_COLS "d.recalled, d.width, d.height"
#define DUP_JOIN " LEFT JOIN messages d ON b.o_dup AND d.id = b.o_id ORDER BY b.o_ord"
#define GROUP_DUP_JOIN                                                                             \
    " LEFT JOIN messages d ON b.o_dup AND d.id = (b.o_msg->>'id')::bigint ORDER BY b.o_ord"

const char *const pg_stmt_sql[ST_COUNT] = {
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
    /* $4: the password the login checked (NULL: none); one a change
     * replaced meanwhile makes no token */
    [ST_TOKEN_CREATE] = "WITH u AS (SELECT id FROM users WHERE id = $2 AND NOT disabled"
                        "  AND ($4::text IS NULL OR password_hash = $4) FOR SHARE),"
                        " ins AS (INSERT INTO tokens(hash, user_id, expires_at)"
                        "  SELECT $1, id, $3 FROM u ON CONFLICT DO NOTHING RETURNING 1)"
                        " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM ins)",
    [ST_TOKEN_LOOKUP] = "SELECT u.id, u.username, u.userpic, t.expires_at FROM tokens t"
                        " JOIN users u ON u.id = t.user_id"
                        " WHERE t.hash = $1 AND t.expires_at > $2 AND NOT u.disabled",
    [ST_TOKEN_DELETE] = "DELETE FROM tokens WHERE hash = $1 RETURNING 1",
    [ST_JWT_REVOKE] = "SELECT chatd_jwt_revoke($1, $2, $3)",
    /* the sends' rows, a duplicate's with its stored recalled, width and
     * height (DUP_COLS: the SQLite answer is the stored row) */
    [ST_SEND] = "SELECT b.*, " DUP_COLS " FROM chatd_send_batch($1::bigint[], $2::bigint[],"
                " $3::text[], $4::text[], $5::bigint[], $6::text[]) b" DUP_JOIN,
    /* 1:1 conversations (kind 0), then the groups the user is or was a
     * member of (kind 1) with the newest message it may see, a departed
     * member's as it left it (schema migration 6); column 12 the last
     * message's sender, 13.. only for groups */
    [ST_CHAT_LIST] =
        "SELECT 0, c.peer_id, u.username, u.userpic, m.type, m.data, m.time, c.unread,"
        " c.last_message_id, m.seq, u.last_seen, u.hide_last_seen, m.from_id, NULL::text,"
        " NULL::boolean, NULL::smallint, NULL::int, NULL::boolean, NULL::boolean,"
        " m.recalled, m.width, m.height, EXISTS (SELECT 1 FROM hidden_messages h"
        "  WHERE h.user_id = $1 AND h.message_id = m.id)"
        " FROM conversations c"
        " JOIN users u ON u.id = c.peer_id"
        " JOIN messages m ON m.id = c.last_message_id"
        " WHERE c.user_id = $1"
        " UNION ALL"
        " SELECT 1, g.id, coalesce(gm.left_name, g.name), coalesce(gm.left_avatar, g.avatar),"
        " m.type, m.data, m.time,"
        " chatd_group_unread2(g.id, t.last_seq, gm.left_seq, gm.read_seq, gm.joined_seq), m.id,"
        " m.seq, NULL, NULL, m.from_id, u.username, gm.muted, gm.role,"
        " coalesce(gm.left_member_count, g.member_count), coalesce(gm.left_dissolved, g.dissolved),"
        " gm.left_seq <> 0, m.recalled, m.width, m.height, EXISTS (SELECT 1 FROM hidden_messages h"
        "  WHERE h.user_id = $1 AND h.message_id = m.id)"
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
    [ST_HISTORY] = "SELECT " MSG_COLS_SEEN(
        "$5") " FROM messages m JOIN users u ON u.id = m.from_id"
              " WHERE m.conv_lo = $1 AND m.conv_hi = $2 AND m.id < $3"
              " AND m.seq < coalesce((SELECT b.seq FROM messages b WHERE b.id = $3"
              "  AND b.conv_lo = $1 AND b.conv_hi = $2), 9223372036854775807)"
              " ORDER BY m.seq DESC LIMIT $4",
    /* The old id cursor: per conversation, the messages past the last one
     * with id <= after, cut to the limit, then merged by id. */
    [ST_SYNC] = "SELECT " MSG_COLS_SEEN(
        "$1") " FROM conversations c"
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
    [ST_SYNC_CURSORS] = SYNC_CURSORS_SQL " ORDER BY conv.last_message_id DESC, conv.peer_id, m.seq",
    /* The same with the user's hidden ids after the hide cursor $5 (at most
     * STORE_DELETED_PAGE + 1, as [id, cursor] pairs) in a last column: one
     * row even when no conversation has news. */
    [ST_SYNC_CURSORS_DEL] =
        "WITH body AS (" SYNC_CURSORS_SQL "), del AS (SELECT (SELECT json_agg(json_build_array("
        "  x.message_id, x.cursor) ORDER BY x.cursor) FROM (SELECT h.message_id, h.cursor"
        "  FROM hidden_messages h WHERE h.user_id = $1 AND h.cursor > $5 ORDER BY h.cursor"
        "  LIMIT 1001) x) AS d)"
        " SELECT body.*, del.d FROM del LEFT JOIN body ON true"
        " ORDER BY body.o_lm DESC, body.peer_id, body.seq",
    [ST_READ] = "SELECT o_status, o_total, o_last_read, o_changed FROM chatd_read($1, $2)",
    /* 1:1 conversations (kind 0), then groups (kind 1), each the most
     * recent first */
    [ST_UNREAD] =
        "SELECT 0, c.peer_id, c.unread, false, c.last_message_id FROM conversations c"
        " WHERE c.user_id = $1 AND c.unread > 0"
        " UNION ALL"
        " SELECT 1, b.group_id, b.n, b.muted, m.id FROM (SELECT gm.group_id, gm.muted,"
        "  chatd_group_unread2(gm.group_id, t.last_seq, gm.left_seq, gm.read_seq, gm.joined_seq)"
        "  AS n,"
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
    [ST_PASSWORD] = "SELECT o_found, o_deleted FROM chatd_user_password($1, $2, $3, $4)",
    [ST_PROFILE] = "UPDATE users SET userpic = $2 WHERE id = $1 RETURNING id, username, userpic",
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
    [ST_GROUP_SEND] =
        "SELECT b.*, " DUP_COLS " FROM chatd_group_send_batch($1::bigint[],"
        " $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[]) b" GROUP_DUP_JOIN,
    /* the user's membership (no row: no group; member false: never a
     * member), then the messages of its seq range as ST_HISTORY's */
    [ST_GROUP_HISTORY] =
        "WITH g AS (SELECT g.id, gm.joined_seq, gm.left_seq, gm.user_id IS NOT NULL AS member"
        "  FROM groups g LEFT JOIN group_members gm ON gm.group_id = g.id AND gm.user_id = $1"
        "  WHERE g.id = $2)"
        " SELECT g.member, " MSG_COLS_SEEN(
            "$1") " FROM g"
                  " LEFT JOIN LATERAL (SELECT m2.* FROM messages m2 WHERE g.member AND m2.conv_lo "
                  "= 0"
                  "  AND m2.conv_hi = g.id AND m2.seq >= g.joined_seq"
                  "  AND (g.left_seq = 0 OR m2.seq <= g.left_seq) AND m2.id < $3"
                  "  AND m2.seq < coalesce((SELECT b.seq FROM messages b WHERE b.id = $3"
                  "   AND b.conv_lo = 0 AND b.conv_hi = g.id), 9223372036854775807)"
                  "  ORDER BY m2.seq DESC LIMIT $4) m ON true"
                  " LEFT JOIN users u ON u.id = m.from_id ORDER BY m.seq DESC",
    [ST_GROUP_READ] = "SELECT o_status, o_result FROM chatd_group_read($1, $2)",
    /* the sends of a run of which one has an image size */
    [ST_SEND_SIZED] = "SELECT b.*, " DUP_COLS " FROM chatd_send_batch_sized($1::bigint[],"
                      " $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[],"
                      " $7::bigint[], $8::bigint[]) b" DUP_JOIN,
    [ST_GROUP_SEND_SIZED] = "SELECT b.*, " DUP_COLS " FROM chatd_group_send_batch_sized("
                            "$1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
                            " $6::bigint[], $7::bigint[], $8::bigint[]) b" GROUP_DUP_JOIN,
    [ST_RECALL] = "SELECT * FROM chatd_recall($1, $2, $3, $4)",
    [ST_DELETE] = "SELECT o_status, array_to_json(o_ids), o_cursor, o_changed"
                  " FROM chatd_hide($1, $2::bigint[])",
};

const char *store_pg_search_sql(void)
{
    return pg_stmt_sql[ST_USER_SEARCH];
}

const char *store_pg_sync_cursors_sql(void)
{
    return pg_stmt_sql[ST_SYNC_CURSORS];
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

void pg_params_free(params *p)
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

/* The candidate names of an external user, as store_sqlite_user.c's
 * sq_op_user_external: the name, "<name>#<external_id>", "<name>#x<hex>" (key
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
 * user has it) for anything else, as store_sqlite_group.c. */
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

/* pg_build() for the group operations. */
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
    case STORE_MESSAGE_RECALL:
        p->st = ST_RECALL;
        p_int(p, r->user_id);
        p_int(p, r->message_id);
        p_int(p, r->time);
        p_int(p, r->recall_window);
        return 0;
    case STORE_MESSAGE_DELETE:
        p->st = ST_DELETE;
        p_int(p, r->user_id);
        p_owned(p, members_array(r->message_ids));
        return p->val[1] ? 0 : -1;
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
int pg_build(params *p, store_req *r)
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
        p_text(p, r->password_hash); /* NULL: no check */
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
        p_int(p, r->user_id);
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
        p->st = r->want_deleted ? ST_SYNC_CURSORS_DEL : ST_SYNC_CURSORS;
        p_int(p, r->user_id);
        p_owned(p, peers ? int_array(peers, k) : NULL);
        p_owned(p, seqs ? int_array(seqs, k) : NULL);
        p_limit(p, r->limit);
        if (r->want_deleted)
            p_int(p, r->deleted_after);
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
    case STORE_USER_PASSWORD:
        if (!r->password_hash)
            return -1;
        p->st = ST_PASSWORD;
        p_int(p, r->user_id);
        p_text(p, r->password_hash);
        p_bytes(p, r->token_hash, (int)sizeof(r->token_hash));
        p_int(p, r->time);
        return 0;
    case STORE_USER_PROFILE:
        p->st = ST_PROFILE;
        p_int(p, r->user_id);
        p_text(p, r->userpic ? r->userpic : "");
        return 0;
    default:
        return build_group(p, r);
    }
}

/* The end of a send run's params (6 of them built): when a send of the run
 * has an image size, the sized statement with the widths and heights
 * (0: none) as two more arrays. -1 on out of memory. */
static int sizes(params *p, store_req **reqs, size_t n, enum stmt_id sized)
{
    for (int i = 0; i < 6; i++)
        if (p->n != 6 || !p->val[i])
            return -1;
    bool any = false;
    for (size_t i = 0; i < n && !any; i++)
        any = reqs[i]->width > 0 || reqs[i]->height > 0;
    if (!any)
        return 0;
    int64_t *wh = malloc(2 * n * sizeof(*wh));
    if (!wh)
        return -1;
    for (size_t i = 0; i < n; i++) {
        wh[i] = reqs[i]->width;
        wh[n + i] = reqs[i]->height;
    }
    p->st = sized;
    p_owned(p, int_array(wh, n));
    p_owned(p, int_array(wh + n, n));
    free(wh);
    return p->val[6] && p->val[7] ? 0 : -1;
}

/* Fills p for the group sends reqs[0..n) (all with their inputs): one
 * call of chatd_group_send_batch. -1 on out of memory. */
int pg_build_group_sends(params *p, store_req **reqs, size_t n)
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
    return sizes(p, reqs, n, ST_GROUP_SEND_SIZED);
}

/* Fills p for the sends reqs[0..n) (all with their inputs): one call of
 * chatd_send_batch. -1 on out of memory. */
int pg_build_sends(params *p, store_req **reqs, size_t n)
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
    return sizes(p, reqs, n, ST_SEND_SIZED);
}
