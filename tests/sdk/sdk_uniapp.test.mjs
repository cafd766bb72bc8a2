// The SDK with its uni-app adapter over a fake of the uni API (lib/fake-uni.mjs)
// against the real chatd.
import { uniPlatform } from './lib/env.mjs';
import { defineScenarios } from './lib/scenarios.mjs';

defineScenarios(uniPlatform);
