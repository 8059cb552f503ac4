import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { request, WebSocket } from 'undici';

/**
 * Whether this machine can run the browser tests: Debian's `chromium` on PATH. CI (.ci/run) installs it and sets
 * DESKIE_TEST_CHROMIUM=required, so there a missing browser fails the suite instead of skipping it.
 */
export function chromiumSkip(): { skip?: string } {
  if (spawnSync('chromium', ['--version'], { stdio: 'ignore' }).status === 0 || process.env['DESKIE_TEST_CHROMIUM'] === 'required') return {};
  return { skip: 'chromium is not installed (apt-get install chromium); CI runs this' };
}

/** A page in headless Chromium, driven over the DevTools protocol: what it evaluates, and every error it reported. */
export interface BrowserPage {
  /** Console errors and warnings, uncaught exceptions, and the browser's own error entries (CSP, failed loads). */
  readonly errors: string[];
  /** Every request header the page's requests carry from now on (an Authorization a login prompt would add). */
  setHeaders(headers: Record<string, string>): Promise<void>;
  /** Loads `url` and waits for its load event. */
  open(url: string): Promise<void>;
  /** The value of a JavaScript expression in the page. */
  evaluate<T>(expression: string): Promise<T>;
}

interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/** Headless Chromium with one blank page, closed (and its profile removed) when the test ends. */
export async function openBrowserPage(t: Test): Promise<BrowserPage> {
  const profile = mkdtempSync(join(tmpdir(), 'chromium-'));
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  const args = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'];
  const browser = spawn('chromium', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => browser.once('exit', resolve));
  t.teardown(async () => {
    browser.kill('SIGKILL');
    await exited;
    // Its helper processes may still be writing to the profile for a moment; a profile left behind harms nothing.
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    } catch {
      // left for the system to clean
    }
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let text = '';
    browser.stderr.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const found = /DevTools listening on ws:\/\/([^/\s]+)\//.exec(text);
      if (found !== null) resolve(found[1] as string);
    });
    browser.once('error', reject);
    browser.once('exit', (code) => reject(new Error(`chromium exited (${code}) before listening: ${text}`)));
  });
  const targets = (await (await request(`http://${endpoint}/json/list`)).body.json()) as Array<{ type: string; webSocketDebuggerUrl: string }>;
  const target = targets.find((candidate) => candidate.type === 'page');
  if (target === undefined) throw new Error('chromium opened no page');

  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true });
    socket.addEventListener('error', reject, { once: true });
  });
  t.teardown(() => socket.close());
  const errors: string[] = [];
  const pending = new Map<number, { resolve: (result: Record<string, unknown>) => void; reject: (error: Error) => void }>();
  const waiting = new Map<string, () => void>();
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as Message;
    if (message.id !== undefined) {
      const call = pending.get(message.id);
      pending.delete(message.id);
      if (message.error !== undefined) call?.reject(new Error(message.error.message));
      else call?.resolve(message.result ?? {});
      return;
    }
    const params = message.params ?? {};
    if (message.method === 'Runtime.consoleAPICalled' && (params['type'] === 'error' || params['type'] === 'warning')) {
      errors.push(`console.${String(params['type'])}: ${JSON.stringify(params['args'])}`);
    } else if (message.method === 'Runtime.exceptionThrown') {
      errors.push(`exception: ${JSON.stringify(params['exceptionDetails'])}`);
    } else if (message.method === 'Log.entryAdded') {
      const entry = params['entry'] as { level: string; text: string; url?: string };
      if (entry.level === 'error' || entry.level === 'warning') errors.push(`${entry.level}: ${entry.text} ${entry.url ?? ''}`);
    }
    if (message.method !== undefined) waiting.get(message.method)?.();
  });
  let nextId = 0;
  const send = (method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      nextId += 1;
      pending.set(nextId, { resolve, reject });
      socket.send(JSON.stringify({ id: nextId, method, params }));
    });
  for (const domain of ['Runtime', 'Log', 'Page', 'Network']) await send(`${domain}.enable`);

  return {
    errors,
    async setHeaders(headers) {
      await send('Network.setExtraHTTPHeaders', { headers });
    },
    async open(url) {
      const loaded = new Promise<void>((resolve) => waiting.set('Page.loadEventFired', resolve));
      await send('Page.navigate', { url });
      await loaded;
    },
    async evaluate<T>(expression: string) {
      const result = await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
      if (result['exceptionDetails'] !== undefined) throw new Error(`evaluating ${expression}: ${JSON.stringify(result['exceptionDetails'])}`);
      return (result['result'] as { value: T }).value;
    },
  };
}
