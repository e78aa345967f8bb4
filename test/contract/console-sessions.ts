import { describe, expect, it } from 'vitest';
import type { ConsoleSessionStore, TokenStore } from '../../src/storage/meta-store.js';

const hex = (c: string) => c.repeat(64);

/** Console sessions held by the store (console/session.ts): what any backend must do, on its own and with its tokens. */
export function consoleSessionStoreContract(name: string, fresh: () => Promise<ConsoleSessionStore & TokenStore>): void {
  describe(`ConsoleSessionStore contract: ${name}`, () => {
    it('finds a session with its token in one lookup; an ended session is gone', async () => {
      const s = await fresh();
      await s.createToken({ name: 'sec', hash: hex('d'), admin: true });
      const now = Date.now();
      await s.createConsoleSession({ key: hex('1'), tokenHash: hex('d'), expiresAt: now + 60_000 }, now);
      await s.createConsoleSession({ key: hex('2'), tokenHash: hex('d'), expiresAt: now + 60_000 }, now);
      expect(await s.findConsoleSession(hex('1'))).toMatchObject({
        expiresAt: now + 60_000,
        token: { name: 'sec', hash: hex('d'), admin: true, revokedAt: null },
      });
      expect(await s.findConsoleSession(hex('9'))).toBeNull();
      expect(await s.endConsoleSession(hex('1'))).toBe(true);
      expect(await s.endConsoleSession(hex('1'))).toBe(false);
      expect(await s.findConsoleSession(hex('1'))).toBeNull();
      // Ending one session leaves the token's others.
      expect(await s.findConsoleSession(hex('2'))).not.toBeNull();
      await expect(s.createConsoleSession({ key: hex('2'), tokenHash: hex('d'), expiresAt: now + 60_000 }, now)).rejects.toThrow();
    });

    it('removes expired sessions when a new one is made', async () => {
      const s = await fresh();
      await s.createToken({ name: 'sec', hash: hex('d'), admin: true });
      await s.createConsoleSession({ key: hex('1'), tokenHash: hex('d'), expiresAt: 2_000 }, 1_000);
      await s.createConsoleSession({ key: hex('2'), tokenHash: hex('d'), expiresAt: 9_000 }, 1_000);
      expect(await s.findConsoleSession(hex('1'))).not.toBeNull();
      await s.createConsoleSession({ key: hex('3'), tokenHash: hex('d'), expiresAt: 10_000 }, 2_000);
      expect(await s.findConsoleSession(hex('1'))).toBeNull();
      expect(await s.findConsoleSession(hex('2'))).not.toBeNull();
    });

    it("revoking a token ends its sessions, not another token's; a name issued again starts with none", async () => {
      const s = await fresh();
      await s.createToken({ name: 'sec', hash: hex('d'), admin: true });
      await s.createToken({ name: 'ops', hash: hex('e'), admin: true });
      const now = Date.now();
      await s.createConsoleSession({ key: hex('1'), tokenHash: hex('d'), expiresAt: now + 60_000 }, now);
      await s.createConsoleSession({ key: hex('2'), tokenHash: hex('e'), expiresAt: now + 60_000 }, now);
      expect(await s.revokeToken('sec')).toBe(true);
      expect(await s.findConsoleSession(hex('1'))).toBeNull();
      expect(await s.findConsoleSession(hex('2'))).toMatchObject({ token: { name: 'ops' } });
      await s.createToken({ name: 'sec', hash: hex('f'), admin: true });
      await s.createConsoleSession({ key: hex('3'), tokenHash: hex('f'), expiresAt: now + 60_000 }, now);
      expect(await s.revokeToken('sec')).toBe(true);
      expect(await s.findConsoleSession(hex('3'))).toBeNull();
      expect(await s.findConsoleSession(hex('2'))).not.toBeNull();
    });

    it('makes the console secret once and hands back the same one', async () => {
      const s = await fresh();
      const a = await s.consoleSecret();
      expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(await s.consoleSecret()).toBe(a);
      expect(await (await fresh()).consoleSecret()).not.toBe(a);
    });
  });
}
