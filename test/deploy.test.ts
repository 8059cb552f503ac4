import { readFileSync } from 'node:fs';
import t from 'tap';

t.test('the container starts the server with the same Node flags as npm start', async (t) => {
  const { scripts } = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  const cmd = /^CMD (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'))?.[1];
  t.ok(cmd, 'the Dockerfile has an exec-form CMD');
  t.same(JSON.parse(cmd ?? '[]'), scripts.start.split(/\s+/));
  t.match(scripts.start, /--expose-gc --max-semi-space-size=\d+ /, 'the memory settings the README describes');
});
