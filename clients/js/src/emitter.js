// emitter.js: a small event emitter (no platform's EventTarget or Node's events).

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this.handlers = new Map();
  }

  /**
   * Calls fn(...args) on every emit of event; returns a function that removes it.
   * @param {string} event
   * @param {Function} fn
   */
  on(event, fn) {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** Like on(), for the next emit only. */
  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  off(event, fn) {
    const set = this.handlers.get(event);
    if (set) set.delete(fn);
  }

  /** A handler that throws does not stop the others (nor the SDK): it is reported on 'handler_error', or on the console when nobody listens there. */
  emit(event, ...args) {
    const set = this.handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        const reported = event !== 'handler_error' && this.handlers.has('handler_error') && this.handlers.get('handler_error').size > 0;
        if (reported) this.emit('handler_error', e, event);
        else if (typeof console !== 'undefined') console.error(e); // never lost silently
      }
    }
  }
}
