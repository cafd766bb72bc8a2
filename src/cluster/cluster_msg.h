/* cluster_msg: the format of a message between chatd nodes on the bus.
 * Pure (no I/O, no state), so it is unit-tested on its own.
 *
 * A message is one header line, '\n', then a body:
 *   P <origin> <except>\n<payload>               a push to the uid of the channel it came
 *                                                on; <except> a client_id to skip or "-"
 *   Q <origin> <tag> <reqid> <method>\n<json>    a request; reqid 0 = nobody answers
 *   R <to> <from> <reqid>\n<json>                an answer, on chatd:n:<tag of to>
 * <origin>, <to> and <from> are instances (16 lowercase hex digits, new every start);
 * <tag> is the two-character node tag; <reqid> is 16 hex digits. */
#ifndef CHATD_CLUSTER_MSG_H
#define CHATD_CLUSTER_MSG_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_INSTANCE_LEN 16
#define CLUSTER_MSG_HEADER_MAX 256 /* bytes of a header line, '\n' included */
#define CLUSTER_METHOD_MAX 47      /* bytes of a method name */
#define CLUSTER_EXCEPT_MAX 64      /* bytes of the client_id a push skips */

typedef struct cluster_msg {
    char kind;                             /* 'P', 'Q' or 'R' */
    char origin[CLUSTER_INSTANCE_LEN + 1]; /* P, Q: the sender; R: the answering node */
    char to[CLUSTER_INSTANCE_LEN + 1];     /* R: the node that asked */
    char tag[3];                           /* Q: the sender's tag (where to answer) */
    uint64_t reqid;                        /* Q, R */
    char method[CLUSTER_METHOD_MAX + 1];   /* Q */
    char except[CLUSTER_EXCEPT_MAX + 1];   /* P: "" when none */
    const char *body;                      /* points into the parsed data */
    size_t body_len;
} cluster_msg;

/* Parses data. Returns NULL, or a short reason why it is malformed (then
 * out is unspecified). */
const char *cluster_msg_parse(const char *data, size_t len, cluster_msg *out);

/* Write a header line (with its '\n') into out; return its length, or -1
 * when it does not fit or a field is not valid. */
int cluster_msg_push_header(char *out, size_t cap, const char *origin, const char *except);
int cluster_msg_request_header(char *out, size_t cap, const char *origin, const char *tag,
                               uint64_t reqid, const char *method);
int cluster_msg_answer_header(char *out, size_t cap, const char *to, const char *from,
                              uint64_t reqid);

/* Offset of the reqid's 16 digits in a request header (patched in place
 * when a call starts: the header is built before its id is known). */
#define CLUSTER_MSG_REQID_OFFSET (2 + CLUSTER_INSTANCE_LEN + 1 + 2 + 1)

#endif
