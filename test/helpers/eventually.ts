/**
 * Polls `check` every 10 ms until it holds, for at most `ms` of real time:
 * for what happens between processes or replicas (a message, a reconnection,
 * a background call landing), never for time the proxy's clock measures.
 */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 2_000): Promise<boolean> {
  const until = performance.now() + ms;
  do {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  } while (performance.now() < until);
  return false;
}
