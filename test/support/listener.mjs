// Test listener run inside a network namespace by test/support/probe.ts (never by the product).
// argv: <tcp|udp> <4|6> <port> <reply>. Prints "LISTENING <port>" once bound, then one
// "PEER <address>" line per TCP connection / UDP datagram, and answers each with <reply>.
import net from 'node:net';
import dgram from 'node:dgram';

const [protocol, family, portText, reply] = process.argv.slice(2);
const host = family === '6' ? '::' : '0.0.0.0';
const port = Number(portText);
const fail = (error) => {
  process.stderr.write(`ERROR ${error.message}\n`);
  process.exit(1);
};
const peer = (address) => process.stdout.write(`PEER ${address.replace(/^::ffff:/, '')}\n`);

if (protocol === 'tcp') {
  const server = net.createServer((socket) => {
    peer(socket.remoteAddress ?? '?');
    socket.on('error', () => undefined);
    socket.end(reply);
  });
  server.on('error', fail);
  server.listen({ port, host, ipv6Only: family === '6' }, () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`);
  });
} else if (protocol === 'udp') {
  const socket = dgram.createSocket({ type: family === '6' ? 'udp6' : 'udp4', ipv6Only: family === '6' });
  socket.on('error', fail);
  socket.on('message', (_msg, rinfo) => {
    peer(rinfo.address);
    socket.send(reply, rinfo.port, rinfo.address);
  });
  socket.bind(port, host, () => process.stdout.write(`LISTENING ${socket.address().port}\n`));
} else {
  fail(new Error(`unknown protocol ${protocol}`));
}
