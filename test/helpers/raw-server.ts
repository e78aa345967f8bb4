import { createServer, type Socket } from 'node:net';

/** A TCP server on loopback answering by hand (HTTP bytes written by the test), for client edge cases. */
export interface RawServer {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  /** Destroys every open connection and stops listening. */
  close(): void;
}

export function rawServer(onSocket: (s: Socket) => void): Promise<RawServer> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as { port: number }).port,
        connections: () => connections,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    ),
  );
}
