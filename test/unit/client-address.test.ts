import { describe, expect, it } from 'vitest';
import { clientResolver } from '../../src/http/client-address.js';

describe('client address behind trusted proxies (trusted_proxies)', () => {
  it('with no trusted proxies the socket peer is the client, whatever X-Forwarded-For says', () => {
    const of = clientResolver([]);
    expect(of('127.0.0.1', '10.0.0.1')).toBe('127.0.0.1');
    expect(of(undefined, '10.0.0.1')).toBe('unknown');
  });
  it('an untrusted peer is the client even when it sends X-Forwarded-For', () => {
    expect(clientResolver(['10.1.0.0/16'])('192.0.2.9', '10.0.0.1')).toBe('192.0.2.9');
  });
  it('behind a trusted proxy the client is the rightmost untrusted entry, never a forged leftmost one', () => {
    const of = clientResolver(['127.0.0.1', '10.1.0.0/16']);
    expect(of('127.0.0.1', '10.0.0.1')).toBe('10.0.0.1');
    expect(of('::ffff:127.0.0.1', '6.6.6.6, 10.0.0.2')).toBe('10.0.0.2');
    expect(of('127.0.0.1', '6.6.6.6, 10.0.0.3, 10.1.4.4')).toBe('10.0.0.3');
    // Every hop trusted: the leftmost is the client.
    expect(of('127.0.0.1', '10.1.0.5, 10.1.0.6')).toBe('10.1.0.5');
    // A hop that is not an address ends the walk at the last trusted hop.
    expect(of('127.0.0.1', '10.0.0.9, garbage')).toBe('127.0.0.1');
    expect(of('127.0.0.1', undefined)).toBe('127.0.0.1');
  });
  it('IPv6 blocks', () => {
    expect(clientResolver(['fd00::/8'])('fd00::1', '2001:db8::7')).toBe('2001:db8::7');
  });
});
