// Control routes under /_simulator/ (docs/simulator.md). Not Deskie: never counted in `calls`, rate-limited, delayed or
// faulted, so a test's count of upstream calls stays the proxy's and a hung simulator can recover.
import type { IncomingMessage } from 'node:http';
import { errorReply, type SimulatorReply } from './endpoints.js';
import type { CacheReport, QueryComputes } from './deskie-cache.js';
import { InvalidKnobError, checkKnobs, type SimulatorKnobs } from './knobs.js';
import { BadRequestError } from './params.js';

export const CONTROL_PATH_PREFIX = '/_simulator/';
/** A knobs body is a few hundred bytes; anything much bigger is a mistake. */
const MAX_CONTROL_BODY_BYTES = 16 * 1_024;

/** What the control routes drive; a Simulator has these and more. */
export interface SimulatorControls {
  readonly knobs: Readonly<SimulatorKnobs>;
  /** Changes the knobs for later requests; throws InvalidKnobError for a value it cannot run with. */
  set(knobs: Partial<SimulatorKnobs>): void;
  /** Every later answer has new numbers (a refresh is visible); returns the new generation. */
  changeNumbers(): number;
  /** The user's calls get 401 until restore() or addUser(); false when no user has that e-mail. */
  revoke(email: string): boolean;
  /** Undoes revoke(); false when no user has that e-mail. */
  restore(email: string): boolean;
  /** When the numbers of a query (`/api/...?...`, as sent) were computed; throws BadRequestError for a query Deskie would refuse. */
  computes(pathAndQuery: string): QueryComputes;
  /** Totals of Deskie's cache (computes, calls, wasted calls) and every query it remembers. */
  cacheReport(): CacheReport;
}

interface ControlRequest {
  readonly query: URLSearchParams;
  readonly body: string;
  /** What follows the route's name in the path (`/api/...` after `computed`); empty for the others. */
  readonly rest: string;
  readonly rawQuery: string;
}

interface ControlRoute {
  readonly method: 'GET' | 'POST';
  /** Whether the path may go on past the route's name. */
  readonly takesPath?: boolean;
  readonly answer: (request: ControlRequest, controls: SimulatorControls) => SimulatorReply;
}

const CONTROL_ROUTES: ReadonlyMap<string, ControlRoute> = new Map<string, ControlRoute>([
  ['knobs', { method: 'POST', answer: setKnobs }],
  ['change-numbers', { method: 'POST', answer: (_request, controls) => jsonReply({ generation: controls.changeNumbers() }) }],
  ['revoke', { method: 'POST', answer: (request, controls) => userReply(request, (email) => controls.revoke(email), true) }],
  ['restore', { method: 'POST', answer: (request, controls) => userReply(request, (email) => controls.restore(email), false) }],
  ['computed', { method: 'GET', takesPath: true, answer: computedReply }],
]);

/** A control request the simulator refuses; the status goes with the message. */
class ControlError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** The answer to a request under /_simulator/; never rejects. */
export async function answerControl(req: IncomingMessage, path: string, query: string, controls: SimulatorControls): Promise<SimulatorReply> {
  try {
    const name = path.slice(CONTROL_PATH_PREFIX.length);
    const slash = name.indexOf('/');
    const route = CONTROL_ROUTES.get(slash === -1 ? name : name.slice(0, slash));
    if (route === undefined || (slash !== -1 && route.takesPath !== true)) {
      throw new ControlError(404, `no such control route: ${path}; routes are ${[...CONTROL_ROUTES.keys()].join(', ')}`);
    }
    if (req.method !== route.method) return errorReply(405, `${path} takes ${route.method}`, { allow: route.method });
    const rest = slash === -1 ? '' : name.slice(slash);
    return route.answer({ query: new URLSearchParams(query), rawQuery: query, rest, body: await readBody(req) }, controls);
  } catch (error) {
    if (error instanceof ControlError) return errorReply(error.statusCode, error.message);
    if (error instanceof BadRequestError) return errorReply(400, error.message);
    if (error instanceof InvalidKnobError) return errorReply(400, error.message);
    return errorReply(500, 'internal server error');
  }
}

/** An empty body changes nothing, so `curl -X POST .../knobs` shows the knobs in force. */
function setKnobs({ body }: ControlRequest, controls: SimulatorControls): SimulatorReply {
  controls.set(checkKnobs(body.trim() === '' ? {} : parseJson(body)));
  return jsonReply({ knobs: controls.knobs });
}

/** Without a path, the whole report; with one, that query's computes (window and lifetime as a call now would read them). */
function computedReply({ rest, rawQuery }: ControlRequest, controls: SimulatorControls): SimulatorReply {
  if (rest === '') return jsonReply(controls.cacheReport());
  return jsonReply(controls.computes(rawQuery === '' ? rest : `${rest}?${rawQuery}`));
}

function userReply({ query }: ControlRequest, change: (email: string) => boolean, revoked: boolean): SimulatorReply {
  const email = query.get('user');
  if (email === null || email === '') throw new ControlError(400, 'the user query parameter (an e-mail) is required');
  if (!change(email)) throw new ControlError(404, `no such user: ${email}`);
  return jsonReply({ user: email, revoked });
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new ControlError(400, 'body is not JSON');
  }
}

function jsonReply(value: unknown): SimulatorReply {
  return { statusCode: 200, body: JSON.stringify(value) };
}

/** The whole body, read to the end even when too big so the 413 reaches a client that is still sending. */
async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes <= MAX_CONTROL_BODY_BYTES) chunks.push(chunk);
  }
  if (bytes > MAX_CONTROL_BODY_BYTES) throw new ControlError(413, `body is larger than ${MAX_CONTROL_BODY_BYTES} bytes`);
  return Buffer.concat(chunks).toString('utf8');
}
