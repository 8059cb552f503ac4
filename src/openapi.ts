import type { FastifyInstance } from 'fastify';

/** Registers the OpenAPI document at the root, before any route, so that every route is seen. */
export function registerOpenApi(_app: FastifyInstance): void {}

/** The document at /docs/json and the browsable page at /docs. */
export function docsRoutes(_app: FastifyInstance): void {}
