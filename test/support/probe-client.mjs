// Probe client run inside a network namespace by test/support/probe.ts (never by the product).
// argv: <tcp|udp> <address> <port> <timeoutMs>. Prints exactly one of: open, refused, timeout;
// or "ERROR <text>" on stderr with exit code 2 for anything else (e.g. unreachable).
import net from 'node:net';
import dgram from 'node:dgram';

const [protocol, address, portText, timeoutText] = process.argv.slice(2);
const port = Number(portText);
let done = false;
const finish = (verdict) => {
  if (done) return;
  done = true;
  process.stdout.write(`${verdict}\n`);
  process.exit(0);
};
const fail = (error) => {
  if (error.code === 'ECONNREFUSED') return finish('refused');
  if (done) return;
  done = true;
  process.stderr.write(`ERROR ${error.code ?? ''} ${error.message}\n`);
  process.exit(2);
};
// PCUT_PROBE_WAIT=1: wait for a line on stdin first (the test moves this process into a cgroup).
if (process.env.PCUT_PROBE_WAIT === '1') process.stdin.once('data', () => start());
else start();

function start() {
  setTimeout(() => finish('timeout'), Number(timeoutText));

  if (protocol === 'tcp') {
    const socket = net.connect({ host: address, port });
    socket.on('connect', () => finish('open'));
    socket.on('error', fail);
  } else if (protocol === 'udp') {
    const socket = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
    socket.on('error', fail);
    socket.on('message', () => finish('open'));
    // A connected socket gets ICMP port-unreachable back as ECONNREFUSED (best effort: the kernel
    // rate-limits ICMP errors, so a closed UDP port may also read as timeout). Resend a few times.
    socket.connect(port, address, () => {
      const send = () => socket.send('probe', (error) => error && fail(error));
      send();
      const timer = setInterval(send, 100);
      timer.unref();
    });
  } else {
    fail(new Error(`unknown protocol ${protocol}`));
  }
}
