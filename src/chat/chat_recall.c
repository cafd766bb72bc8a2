/* chat_recall: withdrawing a message (POST /chat/recall), hiding messages
 * for oneself (POST /chat/delete), and what clients size their UI by
 * (GET /chat/config). See docs/API.md and chat_internal.h. */
#include "chat/chat_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/webhook.h"
#include "cluster/cluster.h"
#include "store/store.h"

#define DELETE_IDS_MAX 100 /* ids in one POST /chat/delete */

/* ---- GET /chat/config ----------------------------------------------------- */

void chat_do_config(chat_call *call)
{
    json_t *types = json_array();
    for (const char *p = chat_cfg->message_types; types && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && json_array_append_new(types, json_stringn(p, len)) != 0) {
            json_decref(types);
            types = NULL;
        }
        if (!end)
            break;
        p = end + 1;
    }
    json_t *cfg = types ? json_pack("{s:I, s:I, s:I, s:I, s:o}", "recall_window",
                                    (json_int_t)chat_cfg->recall_window, "max_text",
                                    (json_int_t)chat_cfg->max_text, "max_upload",
                                    (json_int_t)chat_cfg->max_upload, "page_limit",
                                    (json_int_t)chat_cfg->page_limit, "message_types", types)
                        : NULL;
    if (!cfg) {
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    chat_call_ok(call, cfg);
}

/* ---- POST /chat/recall ---------------------------------------------------- */

json_t *chat_remote_recalled(json_t *body, void *arg)
{
    (void)arg;
    json_t *id = json_object_get(body, "message_id");
    if (json_is_integer(id) && json_integer_value(id) > 0)
        webhook_withdraw_message(json_integer_value(id));
    return NULL;
}

/* The recalled message and its notice: the notice is pushed as a message
 * to both sides' devices (a group's: every member's), all but the calling
 * device, which gets the answer. Already recalled (a retried recall): the
 * stored notice, pushed again. */
static void recall_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_group_failed(call, r); /* {code, message} as group operations */
        return;
    }
    json_t *message = json_object_get(r->result, "message");
    json_t *notice = json_object_get(r->result, "notice");
    json_t *members = json_object_get(r->result, "members");
    const char *origin_id = call->client_id[0] ? call->client_id : NULL;
    char *text = json_is_object(notice) ? json_dumps(notice, JSON_COMPACT) : NULL;
    if (text && members)
        chat_push_to_members(text, members, call->uid, origin_id);
    else if (text) {
        chat_push_message_text(text, json_integer_value(json_object_get(r->result, "peer_id")),
                               call->uid, origin_id);
        /* queued webhook events stop carrying the text; the receiver hears */
        webhook_message_recalled(message, notice);
        /* the node that stored the message queued its event: every node
         * drops what it holds of it */
        if (webhook_enabled()) {
            json_t *body = json_pack("{s:O}", "message_id", json_object_get(message, "id"));
            if (body)
                cluster_cast_all("chat.recalled", body);
            json_decref(body);
        }
    }
    free(text);
    json_t *answer = json_pack("{s:O, s:O}", "message", message, "notice",
                               json_is_object(notice) ? notice : json_null());
    store_req_free(r);
    if (!answer) {
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    chat_call_ok(call, answer);
}

void chat_do_recall(chat_call *call)
{
    int64_t id = chat_want_id(call, call->body, "message_id", "a message id");
    if (!id)
        return;
    if (!chat_want_self(call))
        return;
    if (chat_cfg->recall_window == 0) {
        chat_call_fail(call, 403, "recall_disabled", "recalling messages is turned off here");
        return;
    }
    if (!chat_send_allowed(call))
        return;
    store_req *r = chat_call_store_req(call, STORE_MESSAGE_RECALL, recall_done);
    if (!r)
        return;
    r->message_id = id;
    r->recall_window = chat_cfg->recall_window * 1000;
    store_submit(chat_store, r);
}

/* ---- POST /chat/delete ---------------------------------------------------- */

static void delete_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        store_req_free(r);
        chat_store_failed(call);
        return;
    }
    json_t *ids = json_object_get(r->result, "message_ids");
    json_int_t cursor = json_integer_value(json_object_get(r->result, "cursor"));
    /* Only a delete that hid something is news for the other devices. */
    if (json_is_true(json_object_get(r->result, "changed"))) {
        json_t *push =
            json_pack("{s:s, s:O, s:I}", "type", "deleted", "message_ids", ids, "cursor", cursor);
        if (push)
            chat_push_to_user(call->uid, push, call->client_id[0] ? call->client_id : NULL);
        json_decref(push);
    }
    json_t *answer = json_pack("{s:O, s:I}", "message_ids", ids, "cursor", cursor);
    store_req_free(r);
    if (!answer) {
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    chat_call_ok(call, answer);
}

void chat_do_delete(chat_call *call)
{
    json_t *v = json_object_get(call->body, "message_ids");
    if (!v || json_is_null(v)) {
        chat_call_fail(call, 400, "missing_field", "message_ids is required");
        return;
    }
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > DELETE_IDS_MAX) {
        chat_call_fail(call, 400, "bad_field", "message_ids must be an array of 1 to %d ids",
                       DELETE_IDS_MAX);
        return;
    }
    json_t *ids = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        int64_t id = chat_id_value(e);
        if (id <= 0) {
            json_decref(ids);
            chat_call_fail(call, 400, "bad_field",
                           "message_ids[%zu] must be a message id (a positive integer)", i);
            return;
        }
        if (!ids || json_array_append_new(ids, json_integer(id)) != 0) {
            json_decref(ids);
            chat_call_fail(call, 500, "internal", "out of memory");
            return;
        }
    }
    if (!chat_want_self(call) || !chat_send_allowed(call)) {
        json_decref(ids);
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_MESSAGE_DELETE, delete_done);
    if (!r) {
        json_decref(ids);
        return;
    }
    r->message_ids = ids;
    store_submit(chat_store, r);
}
