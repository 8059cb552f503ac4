/**
 * Loaded with `--import` before src/server.ts in a child process: says on
 * stderr when server.ts adds a SIGHUP listener. (The test runner's own
 * signal handlers are in the child too, so its signal mask cannot tell.)
 */
process.on('newListener', (event) => {
  if (event === 'SIGHUP' && /src[/\\]server\.ts/.test(new Error().stack ?? '')) process.stderr.write('probe: server.ts listens for SIGHUP\n');
});
