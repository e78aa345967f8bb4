import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { startServer } from '../../src/server.js';

export interface TestAirlock {
  url: string;
  port: number;
  dir: string;
  configFile: string;
  stop(): Promise<void>;
  airlock: Awaited<ReturnType<typeof startServer>>['airlock'];
}

/** Write a config file into a fresh temp dir and start Airlock on a free loopback port. */
export async function startAirlock(yaml: string, opts: { dataDir?: string } = {}): Promise<TestAirlock> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-test-'));
  const configFile = join(dir, 'airlock.yaml');
  // Tests read /-/records freely unless they configure auth themselves.
  const auth = /^auth:/m.test(yaml) ? '' : 'auth:\n  admin: open\n';
  writeFileSync(configFile, `listen: 127.0.0.1:0\ndata_dir: ${opts.dataDir ?? join(dir, 'data')}\nlog_level: silent\n${auth}${yaml}`);
  const loaded = loadConfig(configFile);
  const { airlock, port, stop } = await startServer(loaded, { log: pino({ level: process.env.AIRLOCK_TEST_LOG ?? 'silent' }), defaultMetrics: false });
  return { url: `http://127.0.0.1:${port}`, port, dir, configFile, stop, airlock };
}
