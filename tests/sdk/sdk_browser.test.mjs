// The SDK with its browser adapter (ws as the WebSocket, an in-memory
// localStorage, an XMLHttpRequest on node:http) against the real chatd.
import { browserPlatform } from './lib/env.mjs';
import { defineScenarios } from './lib/scenarios.mjs';

defineScenarios(browserPlatform);
