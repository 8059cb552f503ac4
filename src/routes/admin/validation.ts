import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';
import type { TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { badRequest, type ProxyError } from '../../http/errors.js';

/** A refusal of a route's schema, with the value it is about (what Ajv's `verbose` option adds). */
export interface Refusal extends FastifySchemaValidationError {
  readonly data: unknown;
}

/** TypeBox: Fastify's Ajv drops, not refuses, a parameter `additionalProperties: false` omits, and reads "01" as 1. */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema }) => {
  const validator = Compile(schema);
  return (data: unknown) => {
    if (validator.Check(data)) return true;
    const error: Refusal[] = validator.Errors(data).map((refusal) => ({ ...refusal, params: { ...refusal.params }, data: valueAt(data, refusal.instancePath) }));
    return { error };
  };
};

/** The value a JSON Pointer (RFC 6901) names in `data`. */
function valueAt(data: unknown, pointer: string): unknown {
  return pointer
    .split('/')
    .slice(1)
    .reduce<unknown>((value, token) => (value as Record<string, unknown> | undefined)?.[token.replace(/~1/g, '/').replace(/~0/g, '~')], data);
}

export const mustBe = (name: string, accepted: string, value: unknown): ProxyError => badRequest(`${name} must be ${accepted}; got ${JSON.stringify(value)}`);

/** The 400 for a query its route's schema refuses: an unknown name first, then one given twice, then a bad value. */
export function queryRefusal(route: string, accepts: Readonly<Record<string, string>>): (errors: FastifySchemaValidationError[]) => ProxyError {
  return (errors) => {
    const refusals = errors as Refusal[];
    const unknown = refusals.find((refusal) => refusal.keyword === 'additionalProperties');
    if (unknown !== undefined) {
      const [name] = unknown.params['additionalProperties'] as string[];
      return badRequest(`unknown parameter ${name}; ${route} accepts ${Object.keys(accepts).join(', ')}`);
    }
    const { instancePath, data } = refusals[0] as Refusal;
    const name = instancePath.slice(1);
    if (Array.isArray(data)) return badRequest(`parameter ${name} is given ${data.length} times; give it once`);
    return mustBe(name, accepts[name] ?? 'one of the values documented at /docs', data);
  };
}
