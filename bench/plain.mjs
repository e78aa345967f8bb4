// The baseline static server: Node's http module piping a file, nothing else.
// Also answers /bytes with a fixed body (the small-request baseline).
import { createReadStream, statSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [file, smallFile, smallType] = process.argv.slice(2);
const size = statSync(file).size;
const small = smallFile ? readFileSync(smallFile) : Buffer.from('ok');
createServer((req, res) => {
  if (req.url === '/bytes') {
    res.writeHead(200, { 'content-type': smallType ?? 'text/plain', 'content-length': small.length });
    return res.end(small);
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  createReadStream(file).pipe(res);
}).listen(0, '127.0.0.1', function () {
  process.stdout.write(JSON.stringify({ port: this.address().port }) + '\n');
});
