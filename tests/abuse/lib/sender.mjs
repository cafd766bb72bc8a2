// A victim that chats: a signed-in user whose socket sends a chat message
// to a partner every few milliseconds and times each send -> ack round trip.
// Unlike the ping victim (victim.mjs), every sample goes through the storage
// thread (one commit per ack), so it shows what an attack costs the store,
// not only the event loop. Run with the server's --send-rate 0 (the harness
// default) or a rate above 1000 / intervalMs.
import { register, ChatSocket, uname } from '../../integration/lib/chat.mjs';
import { sleep } from '../../integration/lib/server.mjs';
import { timedProbes } from './victim.mjs';

/**
 * Starts a chatting victim on srv. One message in flight at a time; an ack
 * not back within timeoutMs counts as lost. stop() returns the summary.
 */
export async function startSender(srv, { intervalMs = 10, timeoutMs = 2000 } = {}) {
  const [user, partner] = [await register(srv, uname('snd')), await register(srv, uname('peer'))];
  const sock = await ChatSocket.bound(srv, user);
  const probe = timedProbes(sock, {
    intervalMs,
    timeoutMs,
    send: (n) => sock.sendMsg(partner, `victim message ${n}`, { client_msg_id: `v${n}` }),
    isAnswer: (m, n) => {
      if (m.type === 'error') throw Object.assign(new Error(`victim send refused: ${JSON.stringify(m)}`), { abortVictim: true });
      return m.type === 'ack' && m.client_msg_id === `v${n}`;
    },
  });
  return { user, partner, sock, ...probe };
}

/** The chatting victim's baseline with nothing else going on. */
export async function senderBaseline(srv, ms = 1000) {
  const v = await startSender(srv);
  await sleep(ms);
  return v.stop();
}
