// node bench/floor.cjs <mode> <upstream URL, http or https>: two reference proxies for bench/cold-peers.mjs,
// to say which part of a cold pull's cost is Node's and which is Airlock's (issue 17). Prints its
// port when listening. Not a proxy to use: no HTTP parsing of the upstream's answer, one blob.
//
//   slab-pipe  the plain Node pipe (node:http client piped into the response), but the upstream
//              socket reads into 1 MiB slabs (`onread`): Node's HTTP stack with large reads
//   floor      raw sockets, reads into 1 MiB slabs, every chunk written to the client as it
//              arrives, spooled to a file (one writev per event-loop turn, reads paused beyond
//              4 MiB queued) and hashed by a worker that reads the spool back (SHA-256), as
//              Airlock's fill does; the upstream's response head is forwarded as it is. The least
//              a verifying cache does per byte in Node, without routing, records or hold-back.
const http = require('node:http');
const net = require('node:net');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const [mode, upstreamUrl] = process.argv.slice(2);
const upUrl = new URL(upstreamUrl);
const upstream = upUrl.host;
const [upHost, upPort] = [upUrl.hostname, upUrl.port];
// An HTTPS upstream (cold-peers --tls; its certificate trusted through NODE_EXTRA_CA_CERTS).
const TLS = upUrl.protocol === 'https:';
const client = TLS ? require('node:https') : http;
const SLAB = 1 << 20;
const QUEUE_MAX = 4 << 20;

/** An `onread` option whose reads land in the unused rest of a 1 MiB slab (a new slab below 64 KiB). */
function slabReads(onChunk) {
  let slab = null;
  let off = 0;
  return {
    buffer() {
      if (slab === null || SLAB - off < 65536) {
        slab = Buffer.allocUnsafeSlow(SLAB);
        off = 0;
      }
      return slab.subarray(off);
    },
    callback(n, buf) {
      off += n;
      return onChunk(this, buf.subarray(0, n));
    },
  };
}

function slabPipe() {
  class SlabAgent extends client.Agent {
    createConnection(opts, cb) {
      return super.createConnection({ ...opts, onread: slabReads((socket, chunk) => socket.push(chunk)) }, cb);
    }
  }
  const agent = new SlabAgent({ keepAlive: true });
  return http.createServer((req, res) => {
    client.get(`${upUrl.origin}${req.url}`, { agent }, (up) => {
      res.writeHead(up.statusCode, { 'content-length': up.headers['content-length'] });
      up.pipe(res);
    });
  });
}

function floor() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-floor-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  // Stopped by the bench with SIGTERM: exit through 'exit' so the spool directory goes (it was left behind, 1 GiB a run).
  process.once('SIGTERM', () => process.exit(0));
  const hasher = new Worker(
    `const { parentPort } = require('node:worker_threads');
     const fs = require('node:fs');
     const { createHash } = require('node:crypto');
     const buf = Buffer.allocUnsafe(1 << 20);
     let fd, h, pos;
     parentPort.on('message', (m) => {
       if (m.open) { fd = fs.openSync(m.open, 'r'); h = createHash('sha256'); pos = 0; return; }
       while (pos < m.upTo) { const n = fs.readSync(fd, buf, 0, Math.min(buf.length, m.upTo - pos), pos); h.update(buf.subarray(0, n)); pos += n; }
       if (m.finish) { fs.closeSync(fd); parentPort.postMessage(h.digest('hex')); }
     });`,
    { eval: true },
  );
  hasher.on('message', () => {});
  let seq = 0;
  return net.createServer((client) => {
    let head = '';
    client.on('error', () => {});
    client.on('data', function onHead(d) {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      client.removeListener('data', onHead);
      const file = path.join(dir, `spool-${seq++}`);
      const spool = fs.promises.open(file, 'w');
      // The worker opens the file once it exists (before any of the drain's messages, which await it too).
      void spool.then(() => hasher.postMessage({ open: file }));
      const queue = [];
      let queued = 0;
      let written = 0;
      let hashedTo = 0;
      let writing = false;
      let scheduled = false;
      let ended = false;
      let stopped = false;
      const resume = () => {
        if (stopped && queued < QUEUE_MAX / 2 && !client.writableNeedDrain) {
          stopped = false;
          up.resume();
        }
      };
      const drain = async () => {
        if (writing) return;
        writing = true;
        const fh = await spool;
        while (queue.length > 0) {
          const bufs = queue.splice(0);
          let n = 0;
          for (const b of bufs) n += b.length;
          await fh.writev(bufs, written);
          written += n;
          queued -= n;
          if (written - hashedTo >= 1 << 20) hasher.postMessage({ upTo: (hashedTo = written) });
          resume();
        }
        writing = false;
        if (ended && queue.length === 0) {
          await fh.close();
          hasher.postMessage({ upTo: written, finish: true });
        }
      };
      const up = (TLS ? require('node:tls') : net).connect({
        host: upHost,
        port: Number(upPort),
        onread: slabReads((_socket, chunk) => {
          queue.push(chunk);
          queued += chunk.length;
          if (!scheduled) {
            scheduled = true;
            setImmediate(() => {
              scheduled = false;
              void drain();
            });
          }
          const sent = client.write(chunk);
          if (sent && queued < QUEUE_MAX) return true;
          stopped = true;
          up.pause();
          if (!sent) client.once('drain', resume);
          return false;
        }),
      });
      up.on(TLS ? 'secureConnect' : 'connect', () => up.write(`GET ${head.split(' ')[1]} HTTP/1.1\r\nhost: ${upstream}\r\nconnection: close\r\n\r\n`));
      up.on('end', () => {
        ended = true;
        void drain();
        client.end();
      });
      up.on('error', () => client.destroy());
    });
  });
}

const server = mode === 'slab-pipe' ? slabPipe() : mode === 'floor' ? floor() : null;
if (!server) throw new Error(`mode: slab-pipe or floor, not ${mode}`);
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
