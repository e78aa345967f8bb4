#!/usr/bin/env node
import { keepYoungGenerationSmall } from '../obs/young-gen.js';

// The entry point: V8's young generation is kept small (obs/young-gen.ts) before the rest of the
// CLI (cli/airlock.ts) is loaded, which is why that is imported here and not statically: every
// module of a static import graph is read and compiled before the first of them runs.
keepYoungGenerationSmall();
await import('./airlock.js');
