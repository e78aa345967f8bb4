import { BlockList, isIP } from 'node:net';

/** An IPv4 address as Node gives it on a dual-stack socket (`::ffff:10.0.0.7`), as plain IPv4. */
const plain = (addr: string): string => (addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr);

/**
 * Who the client is, from the socket's peer and X-Forwarded-For (the `trusted_proxies` setting).
 * Only when the peer is a trusted proxy is the header read, from the right: each proxy appends the
 * address it received the request from, so the rightmost entry that is not itself a trusted proxy
 * is the client (entries to its left are whatever that client chose to send, and never believed).
 * An entry that is not an address ends the walk at the last trusted hop. With no trusted proxies
 * (the default) the client is the socket's peer, as it always was.
 */
export function clientResolver(trusted: readonly string[]): (peer: string | undefined, forwarded: string | undefined) => string {
  if (trusted.length === 0) return (peer) => peer ?? 'unknown';
  const list = new BlockList();
  for (const t of trusted) {
    const [addr, bits] = t.split('/');
    const family = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  const isTrusted = (addr: string): boolean => {
    const a = plain(addr);
    const family = isIP(a);
    return family !== 0 && list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  };
  return (peer, forwarded) => {
    if (peer === undefined) return 'unknown';
    if (!forwarded || !isTrusted(peer)) return peer;
    let client = plain(peer);
    const hops = forwarded.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i].trim();
      if (isIP(hop) === 0) break;
      client = plain(hop);
      if (!isTrusted(hop)) break;
    }
    return client;
  };
}
