import { get as httpGet, type IncomingHttpHeaders } from 'node:http';
import { DEMO } from './stack.js';

export interface ServerEvent {
  readonly id: string | undefined;
  readonly data: string;
}

/** An event stream read over a real socket: its events and comments as they arrive, and whether the server ended it. */
export interface EventStream {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly events: ServerEvent[];
  readonly comments: string[];
  readonly body: () => string;
  readonly ended: () => boolean;
  close(): void;
}

export function openEventStream(stack: { readonly proxyUrl: string }, path: string, { authorization = DEMO, headers = {} }: { authorization?: string; headers?: Record<string, string> } = {}): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const request = httpGet(`${stack.proxyUrl}${path}`, { headers: { accept: 'text/event-stream', authorization, ...headers } }, (response) => {
      const events: ServerEvent[] = [];
      const comments: string[] = [];
      let text = '';
      let pending = '';
      let ended = false;
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
        pending += chunk;
        let end;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const frame = pending.slice(0, end).split('\n');
          pending = pending.slice(end + 2);
          const comment = frame.find((line) => line.startsWith(':'));
          if (comment !== undefined) comments.push(comment);
          const data = frame.filter((line) => line.startsWith('data: ')).map((line) => line.slice(6));
          if (data.length > 0) events.push({ id: frame.find((line) => line.startsWith('id: '))?.slice(4), data: data.join('\n') });
        }
      });
      const finish = (): void => void (ended = true);
      response.on('end', finish);
      response.on('close', finish);
      response.on('error', finish);
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        events,
        comments,
        body: () => text,
        ended: () => ended,
        close: () => request.destroy(),
      });
    });
    request.on('error', reject);
  });
}

