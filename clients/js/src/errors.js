// errors.js: every failure the SDK reports is a ChatError with a machine-readable
// `code`: the server's (docs/API.md: "bad_field", "not_member", "rate_limited",
// "recall_window_passed", ...) or one of the client's own below. Translate codes,
// not messages: `msg` is the server's English sentence, for logs.

/** Codes the SDK itself gives (the server never sends these). */
export const CLIENT_CODES = Object.freeze({
  NETWORK: 'network', // the server could not be reached (no answer, connection refused, offline)
  TIMEOUT: 'timeout', // no answer in time (a request, or a sent message's ack)
  BAD_RESPONSE: 'bad_response', // an answer that is not chatd's JSON envelope
  NOT_SIGNED_IN: 'not_signed_in', // a call that needs a token before one was given
  TOO_LONG: 'too_long', // a message longer than the server's max_text (checked before sending)
  CANCELLED: 'cancelled', // an upload aborted, a pending request of a client that was closed
  BIND_FAILED: 'bind_failed', // POST /chat/bind answered without a bind
});

export class ChatError extends Error {
  /**
   * @param {string} code  machine-readable code
   * @param {string} [message]  a readable sentence (the server's msg when it gave one)
   * @param {{status?: number, network?: boolean, op?: string, data?: object}} [o]
   */
  constructor(code, message = code, { status = 0, network = false, op = '', data } = {}) {
    super(message);
    this.name = 'ChatError';
    /** @type {string} */
    this.code = code;
    /** HTTP status of the answer (0: none, e.g. a socket error or no answer). */
    this.status = status;
    /** True when the server was not reached: retrying later may work. */
    this.network = network;
    /** For a socket error: the operation refused ("send", "call", "bind", "event"). */
    this.op = op;
    /** The server's error object as it came (socket errors), when there was one. */
    if (data) this.data = data;
  }
}
