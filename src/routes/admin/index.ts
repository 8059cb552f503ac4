import type { FastifyInstance, FastifySchema } from 'fastify';
import { bearerMatcher } from '../../auth/bearer.js';
import { type ParsedQuery, QUERY_STRING_REFUSAL } from '../../deskie/query-string.js';
import { ProxyError } from '../../http/errors.js';
import { errorResponse, responseHeaders } from '../stats-schema.js';
import { type EntriesOptions, entriesRoutes } from './entries.js';
import { type PrewarmOptions, prewarmRoutes } from './prewarm.js';
import { validatorCompiler } from './validation.js';

export interface AdminRouteOptions extends EntriesOptions, PrewarmOptions {
  /** ADMIN_TOKEN: every admin request must carry it as a bearer token. */
  readonly token: string;
}

const CHALLENGE = 'Bearer realm="admin"';

/** What the token check adds to every admin route's description: the scheme, the tag and its 401. */
const BEHIND_THE_TOKEN = {
  tags: ['admin'],
  security: [{ adminToken: [] }],
  unauthorized: errorResponse('The bearer token is missing or wrong (no hint which).', responseHeaders('X-Request-Id', 'Cache-Control', 'WWW-Authenticate')),
};

/** /admin/ (only with ADMIN_TOKEN): list, purge and prewarm cache entries; never cached, never forwarded. */
export function adminRoutes(app: FastifyInstance, options: AdminRouteOptions): void {
  const allowed = bearerMatcher(options.token);
  app.register(async (admin) => {
    // Before any body is read; one message whatever was wrong, so a caller learns nothing from it.
    admin.addHook('onRequest', async (request) => {
      if (!allowed(request.headers.authorization)) {
        throw new ProxyError('UNAUTHORIZED', 'a valid admin token is required: Authorization: Bearer <ADMIN_TOKEN>', 401, { 'www-authenticate': CHALLENGE });
      }
    });
    // A query string the parser could not read (deskie/query-string.ts) is refused before its parameters are checked.
    admin.addHook('preValidation', async (request) => {
      const refused = (request.query as ParsedQuery)[QUERY_STRING_REFUSAL];
      if (refused !== undefined) throw refused;
    });
    // Every route is behind the token: its description says so.
    admin.addHook('onRoute', (route) => {
      const schema: FastifySchema = route.schema ?? {};
      const response = { ...(schema.response as object), 401: BEHIND_THE_TOKEN.unauthorized };
      route.schema = { ...schema, tags: BEHIND_THE_TOKEN.tags, security: BEHIND_THE_TOKEN.security, response };
    });
    admin.setValidatorCompiler(validatorCompiler);
    entriesRoutes(admin, options);
    admin.register(prewarmRoutes, options);
  });
}
