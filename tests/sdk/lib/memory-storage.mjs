// memory-storage.mjs: the Web Storage interface (localStorage) in memory, one per
// simulated browser profile.
export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }

  get length() {
    return this.map.size;
  }

  key(i) {
    return [...this.map.keys()][i] ?? null;
  }

  getItem(k) {
    return this.map.has(String(k)) ? this.map.get(String(k)) : null;
  }

  setItem(k, v) {
    this.map.set(String(k), String(v));
  }

  removeItem(k) {
    this.map.delete(String(k));
  }

  clear() {
    this.map.clear();
  }
}
