/**
 * The hit-path baseline: a bare Fastify route that returns fixed bytes with
 * fixed headers, the least any Node HTTP server could do for the same answer.
 * Run as its own process: `node --import tsx bench/baseline-server.ts <port> <answer.json>`.
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';

const [port, answerFile] = process.argv.slice(2);
if (!port || !answerFile) throw new Error('usage: baseline-server.ts <port> <answer.json>');
const answer = JSON.parse(readFileSync(answerFile, 'utf8')) as { headers: Record<string, string>; body: string };
const body = Buffer.from(answer.body, 'base64');

const app = Fastify();
app.get('/api/stats_leaderboard.json', async (_request, reply) => reply.headers(answer.headers).send(body));
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.stdout.write('ready\n');
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
