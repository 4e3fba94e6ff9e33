// HTTP client for the TCP benchmark scenarios; prints one JSON line.
//   connections ADDRESS PORT DURATION_MS CONCURRENCY [RATE]: GET / on a new TCP connection each time, for
//     DURATION_MS, CONCURRENCY at a time; with RATE, new connections start at RATE per second (at most
//     CONCURRENCY open), so that forwarders can be compared at the same connection rate
//   bulk ADDRESS PORT DURATION_MS: one connection streaming GET /stream/<large> for DURATION_MS, then aborted
import { request } from 'node:http';

const [mode, address, portText, durationText, concurrencyText] = process.argv.slice(2);
const port = Number(portText);
const durationMs = Number(durationText);
const started = process.hrtime.bigint();
const elapsedMs = () => Number(process.hrtime.bigint() - started) / 1e6;

if (mode === 'connections') {
  let completed = 0;
  let failed = 0;
  let firstError;
  const concurrency = Number(concurrencyText ?? 8);
  const rate = Number(process.argv[7] ?? 0);
  const once = () =>
    new Promise((resolve) => {
      const req = request({ host: address, port, path: '/', agent: false, timeout: 5000 }, (response) => {
        response.resume();
        response.on('end', () => {
          if (response.statusCode === 200) completed += 1;
          else failed += 1;
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (error) => {
        failed += 1;
        firstError ??= error.message;
        setTimeout(resolve, 10);
      });
      req.end();
    });
  if (rate > 0) {
    let started = 0;
    let open = 0;
    await new Promise((resolve) => {
      const tick = () => {
        const elapsed = elapsedMs();
        if (elapsed >= durationMs) {
          const wait = () => (open === 0 ? resolve() : setTimeout(wait, 5));
          return wait();
        }
        while (started < (elapsed * rate) / 1000 && open < concurrency) {
          started += 1;
          open += 1;
          void once().then(() => (open -= 1));
        }
        setTimeout(tick, 1);
      };
      tick();
    });
  } else {
    const worker = async () => {
      while (elapsedMs() < durationMs) await once();
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }
  console.log(JSON.stringify({ completed, failed, firstError, seconds: elapsedMs() / 1000 }));
} else if (mode === 'bulk') {
  let bytes = 0;
  let firstByteMs;
  await new Promise((resolve) => {
    // A stalled path must not hang the benchmark.
    setTimeout(resolve, durationMs + 5000).unref();
    const req = request({ host: address, port, path: `/stream/${1024 ** 4}`, agent: false }, (response) => {
      response.on('data', (chunk) => {
        firstByteMs ??= elapsedMs();
        bytes += chunk.length;
        if (elapsedMs() >= durationMs) {
          req.destroy();
          resolve();
        }
      });
      response.on('error', () => resolve());
    });
    req.on('error', () => resolve());
    req.end();
  });
  const seconds = (elapsedMs() - (firstByteMs ?? 0)) / 1000;
  console.log(JSON.stringify({ bytes, seconds, bitsPerSecond: seconds > 0 ? (bytes * 8) / seconds : 0 }));
  process.exit(0);
} else {
  console.error('usage: tcp-client.mjs connections|bulk ADDRESS PORT DURATION_MS [CONCURRENCY]');
  process.exit(2);
}
