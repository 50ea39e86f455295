// The non-database baseline: a fastify hello-world in its own process (the
// broker runs on fastify too). Listens on 127.0.0.1 at a free port and
// prints the port on stdout. Run by api-bench.ts.

import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/', async () => ({ hello: 'world' }));
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${new URL(address).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
