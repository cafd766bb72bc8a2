/* store_sqlite_user: the users of the SQLite backend: accounts (create,
 * lookups by name and id, external identities, search, admin actions),
 * login tokens and revoked JWTs with their purge, and presence (the
 * last_seen setting and time, a user's peers). See store_sqlite_internal.h. */
#include "store/store_sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/names.h"

/* {id, username, userpic} from columns 0..2. */
static json_t *user_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0), "username",
                     sq_col_text(st, 1), "userpic", sq_col_text(st, 2));
}

/* A user as others see it: {id, username, userpic, last_seen}; columns
 * 3..4 last_seen and hide_last_seen. */
static json_t *peer_user_json(sqlite3_stmt *st)
{
    json_t *u = user_json(st);
    if (u && json_object_set_new(u, "last_seen", sq_last_seen_json(st, 3)) != 0) {
        json_decref(u);
        u = NULL;
    }
    return u;
}

int sq_op_user_create(sq *b, store_req *r)
{
    if (!r->username)
        return sq_bad_input(r, "username");
    char *key = names_key(r->username);
    if (!key)
        return sq_bad_input(r, "a username that has a key (valid UTF-8)");
    const char *pic = r->userpic ? r->userpic : "";
    sqlite3_stmt *st = sq_prep(b, ST_USER_INSERT);
    sq_bind_text(st, 1, r->username);
    sq_bind_text(st, 2, r->password_hash);
    sq_bind_text(st, 3, pic);
    sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, r->time);
    sq_bind_text(st, 6, key);
    int rc = sq_exec_stmt(st);
    free(key);
    if (sq_is_constraint(rc))
        return STORE_CONFLICT;
    if (rc != SQLITE_DONE)
        return sq_db_fail(b, "user insert");
    r->result = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_last_insert_rowid(b->db),
                          "username", r->username, "userpic", pic);
    return r->result ? STORE_OK : STORE_ERROR;
}

static json_t *user_with_hash_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:s?, s:b}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                     "username", sq_col_text(st, 1), "userpic", sq_col_text(st, 2), "password_hash",
                     (const char *)sqlite3_column_text(st, 3), "disabled",
                     sqlite3_column_int64(st, 4) != 0);
}

int sq_op_user_by_name(sq *b, store_req *r)
{
    if (!r->username)
        return sq_bad_input(r, "username");
    char *key = names_key(r->username);
    if (!key) /* not UTF-8: no account has that name */
        return STORE_NOT_FOUND;
    sqlite3_stmt *st = sq_prep(b, ST_USER_BY_NAME);
    sq_bind_text(st, 1, key);
    int status = sq_row_json(b, st, user_with_hash_json, &r->result);
    free(key);
    return status;
}

int sq_op_user_by_id(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_USER_BY_ID);
    sqlite3_bind_int64(st, 1, r->user_id);
    return sq_row_json(b, st, user_json, &r->result);
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
    sqlite3_stmt *st = sq_prep(b, ST_JWT_REVOKED);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->time);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return STORE_NOT_FOUND;
    return rc == SQLITE_DONE ? STORE_OK : sq_db_fail(b, "revoked JWT lookup");
}

int sq_op_jwt_revoke(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_JWT_PURGE);
    sqlite3_bind_int64(st, 1, r->time);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "revoked JWT purge");
    st = sq_prep(b, ST_JWT_REVOKE);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->expires);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "JWT revoke");
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
int sq_op_user_external(sq *b, store_req *r)
{
    if (!r->external_id || !r->username)
        return sq_bad_input(r, "external_id/username");
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
        status = sq_bad_input(r, "a username that has a key (valid UTF-8)");
        goto out;
    }

    sqlite3_stmt *st = sq_prep(b, ST_USER_BY_EXT);
    sq_bind_text(st, 1, r->external_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW &&
        (sqlite3_column_int64(st, 3) != 0 || r->issued_at < sqlite3_column_int64(st, 4))) {
        /* disabled, or a JWT issued before the user's last revoke */
        sqlite3_reset(st);
        status = STORE_NOT_FOUND;
    } else if (rc == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        char *cur_name = strdup(sq_col_text(st, 1));
        char *cur_pic = strdup(sq_col_text(st, 2));
        sqlite3_reset(st);
        if (!cur_name || !cur_pic)
            status = STORE_ERROR;
        for (int i = 0; i < 3 && status == STORE_CONFLICT; i++) {
            const char *name = names[i];
            /* the name it already has is its own, whatever its key */
            if (i == 2 || strcmp(cur_name, name) != 0 || strcmp(cur_pic, pic) != 0) {
                sqlite3_stmt *up = sq_prep(b, ST_USER_UPDATE);
                sqlite3_bind_int64(up, 1, id);
                sq_bind_text(up, 2, name);
                sq_bind_text(up, 3, pic);
                sq_bind_text(up, 4, keys[i]);
                rc = sq_exec_stmt(up);
                if (sq_is_constraint(rc))
                    continue;
                if (rc != SQLITE_DONE) {
                    status = sq_db_fail(b, "user update");
                    break;
                }
                user_entry *cached;
                HASH_FIND(hh, b->users, &id, sizeof(id), cached);
                if (cached)
                    sq_user_forget(b, cached);
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
            sqlite3_stmt *ins = sq_prep(b, ST_USER_INSERT);
            sq_bind_text(ins, 1, names[i]);
            sqlite3_bind_null(ins, 2);
            sq_bind_text(ins, 3, pic);
            sq_bind_text(ins, 4, r->external_id);
            sqlite3_bind_int64(ins, 5, r->time);
            sq_bind_text(ins, 6, keys[i]);
            rc = sq_exec_stmt(ins);
            if (sq_is_constraint(rc))
                continue;
            if (rc != SQLITE_DONE) {
                status = sq_db_fail(b, "user insert");
                break;
            }
            r->result =
                json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_last_insert_rowid(b->db),
                          "username", names[i], "userpic", pic);
            status = r->result ? STORE_OK : STORE_ERROR;
        }
    } else {
        sqlite3_reset(st);
        status = sq_db_fail(b, "user lookup");
    }
out:
    free(alt);
    free(hex);
    for (int i = 0; i < 3; i++)
        free(keys[i]);
    return status;
}

int sq_op_user_search(sq *b, store_req *r)
{
    if (!r->query)
        return sq_bad_input(r, "query");
    char *key = names_key(r->query); /* NULL if not UTF-8: no name starts with it */
    char *hi = key ? store_search_bound(key) : NULL;
    if (!hi) {
        free(key);
        r->result = json_array();
        return r->result ? STORE_OK : STORE_ERROR;
    }
    sqlite3_stmt *st = sq_prep(b, ST_USER_SEARCH);
    sqlite3_bind_int64(st, 1, r->user_id);
    sq_bind_text(st, 2, key);
    sq_bind_text(st, 3, hi);
    sqlite3_bind_int64(st, 4, sq_sql_limit(r->limit));
    r->result = sq_rows_json(b, st, peer_user_json);
    free(key);
    free(hi);
    return r->result ? STORE_OK : STORE_ERROR;
}

int sq_op_token_create(sq *b, store_req *r)
{
    user_entry *u;
    int status = sq_user_get(b, r->user_id, &u);
    if (status != STORE_OK)
        return status;
    sqlite3_stmt *st = sq_prep(b, ST_TOKEN_INSERT);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->user_id);
    sqlite3_bind_int64(st, 3, r->expires);
    sq_bind_text(st, 4, r->password_hash);
    int rc = sq_exec_stmt(st);
    if (sq_is_constraint(rc))
        return STORE_CONFLICT;
    if (rc != SQLITE_DONE)
        return sq_db_fail(b, "token insert");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND; /* disabled, or its password changed */
    r->result = json_null();
    return STORE_OK;
}

int sq_op_user_admin(sq *b, store_req *r)
{
    if (r->action < STORE_ADMIN_REVOKE || r->action > STORE_ADMIN_ENABLE)
        return sq_bad_input(r, "a known admin action");
    sqlite3_stmt *st = sq_prep(b, ST_ADMIN_USER);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->time);
    sqlite3_bind_int(st, 3, r->action);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "user admin update");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND;
    int64_t deleted = 0;
    if (r->action != STORE_ADMIN_ENABLE) {
        st = sq_prep(b, ST_ADMIN_TOKENS);
        sqlite3_bind_int64(st, 1, r->user_id);
        if (sq_exec_stmt(st) != SQLITE_DONE)
            return sq_db_fail(b, "user tokens delete");
        deleted = sqlite3_changes64(b->db);
    }
    r->result = json_pack("{s:I, s:b}", "tokens_deleted", (json_int_t)deleted, "disabled",
                          r->action == STORE_ADMIN_DISABLE);
    return r->result ? STORE_OK : STORE_ERROR;
}

int sq_op_last_seen(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_LAST_SEEN);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->time);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "last_seen update");
    r->result = json_null();
    return sqlite3_changes(b->db) ? STORE_OK : STORE_NOT_FOUND;
}

int sq_op_user_settings(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_SETTINGS);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int(st, 2, r->action ? 1 : 0);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "settings update");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND;
    r->result = json_pack("{s:b}", "hide_last_seen", r->action ? 1 : 0);
    return r->result ? STORE_OK : STORE_ERROR;
}

int sq_op_user_password(sq *b, store_req *r)
{
    if (!r->password_hash)
        return sq_bad_input(r, "password_hash");
    sqlite3_stmt *st = sq_prep(b, ST_PASSWORD_SET);
    sqlite3_bind_int64(st, 1, r->user_id);
    sq_bind_text(st, 2, r->password_hash);
    sqlite3_bind_blob(st, 3, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, r->time);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "password update");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND;
    st = sq_prep(b, ST_PASSWORD_TOKENS);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_blob(st, 2, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "password tokens delete");
    r->result = json_pack("{s:I}", "tokens_deleted", (json_int_t)sqlite3_changes64(b->db));
    return r->result ? STORE_OK : STORE_ERROR;
}

int sq_op_user_profile(sq *b, store_req *r)
{
    const char *pic = r->userpic ? r->userpic : "";
    sqlite3_stmt *st = sq_prep(b, ST_PROFILE_SET);
    sqlite3_bind_int64(st, 1, r->user_id);
    sq_bind_text(st, 2, pic);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "profile update");
    if (sqlite3_changes(b->db) == 0)
        return STORE_NOT_FOUND;
    /* the cache holds the picture sends answer with: it is read again (a
     * rollback of this pass empties the cache anyway) */
    user_entry *cached;
    HASH_FIND(hh, b->users, &r->user_id, sizeof(r->user_id), cached);
    if (cached)
        sq_user_forget(b, cached);
    st = sq_prep(b, ST_USER_BY_ID);
    sqlite3_bind_int64(st, 1, r->user_id);
    return sq_row_json(b, st, user_json, &r->result);
}

int sq_op_presence_peers(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_PEERS);
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
        status = sq_db_fail(b, "presence peers");
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
int sq_purge(sq *b, int64_t time, int64_t limit, int64_t *tokens, int64_t *jwts)
{
    sqlite3_stmt *st = sq_prep(b, ST_PURGE_TOKENS);
    sqlite3_bind_int64(st, 1, time);
    sqlite3_bind_int64(st, 2, limit);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "token purge"), -1;
    *tokens = sqlite3_changes64(b->db);
    st = sq_prep(b, ST_PURGE_JWTS);
    sqlite3_bind_int64(st, 1, time);
    sqlite3_bind_int64(st, 2, limit);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "revoked JWT purge"), -1;
    *jwts = sqlite3_changes64(b->db);
    return 0;
}

int sq_op_token_purge(sq *b, store_req *r)
{
    int64_t tokens = 0, jwts = 0;
    if (sq_purge(b, r->time, r->limit > 0 ? r->limit : STORE_PURGE_BATCH, &tokens, &jwts) != 0)
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

int sq_op_token_lookup(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_TOKEN_LOOKUP);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->time);
    return sq_row_json(b, st, token_user_json, &r->result);
}

int sq_op_token_delete(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_TOKEN_DELETE);
    sqlite3_bind_blob(st, 1, r->token_hash, sizeof(r->token_hash), SQLITE_STATIC);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "token delete");
    r->result = json_null();
    return sqlite3_changes(b->db) > 0 ? STORE_OK : STORE_NOT_FOUND;
}
