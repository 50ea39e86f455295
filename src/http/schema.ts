// Request validation: one Ajv instance, schemas compiled once per route, and
// error messages that name the offending field.

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { errors, type BrokerError } from '../errors.ts';
import { parseDuration } from '../util/duration.ts';

const ajv = new Ajv({ allErrors: false, coerceTypes: false, useDefaults: false, strict: false });

/** Seconds or a Go duration string. */
export const duration = { type: ['integer', 'string'], minimum: 0, maxLength: 64 } as const;
/** A list given as a JSON array or a comma-separated string (Vault accepts both). */
export const stringList = { anyOf: [{ type: 'string', maxLength: 65536 }, { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 4096 } }] } as const;
export const name = { type: 'string', minLength: 1, maxLength: 128 } as const;

export function object(properties: Record<string, unknown>, required: string[] = []): Record<string, unknown> {
  return { type: 'object', properties, required, additionalProperties: false };
}

function fieldOf(e: ErrorObject): string {
  if (e.keyword === 'required') return String((e.params as { missingProperty: string }).missingProperty);
  if (e.keyword === 'additionalProperties') return String((e.params as { additionalProperty: string }).additionalProperty);
  return e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(body)';
}

export function describe(e: ErrorObject): BrokerError {
  const field = fieldOf(e);
  if (e.keyword === 'required') return errors.BAD_REQUEST(`missing required field "${field}"`);
  if (e.keyword === 'additionalProperties') return errors.BAD_REQUEST(`unknown field "${field}"`);
  if (e.keyword === 'anyOf' || e.keyword === 'oneOf') return errors.BAD_FIELD(field, 'has the wrong type');
  return errors.BAD_FIELD(field, e.message ?? 'is invalid');
}

/**
 * Vault's warning for parameters an endpoint does not know (vault/sdk
 * framework/backend.go): such fields are accepted and ignored, never a 400.
 */
export function unknownFieldsWarning(fields: string[]): string {
  return `Endpoint ignored these unrecognized parameters: [${fields.join(' ')}]`;
}

/**
 * Remove from `value` (in place) every field its schema does not declare
 * where the schema says `additionalProperties: false`, at every level the
 * schema describes; returns their dotted names. Walks the schema, so its depth
 * is bounded by the schema, never by the input.
 */
function stripUnknown(schema: Record<string, unknown>, value: unknown, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
  const properties = schema.properties as Record<string, Record<string, unknown>> | undefined;
  if (!properties) return;
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (Object.hasOwn(properties, key)) stripUnknown(properties[key]!, obj[key], `${path}${key}.`, out);
    else if (schema.additionalProperties === false) {
      out.push(path + key);
      delete obj[key];
    }
  }
}

/**
 * Compile a body schema once. The returned check removes undeclared fields
 * (returning their names, for Vault's "unrecognized parameters" warning) and
 * then validates what is left.
 * @throws BrokerError 400 naming the first field with a wrong type or value.
 */
export function compile(schema: Record<string, unknown>): (value: unknown) => string[] {
  const validate: ValidateFunction = ajv.compile(schema);
  return (value) => {
    const unknown: string[] = [];
    stripUnknown(schema, value, '', unknown);
    if (!validate(value)) throw describe(validate.errors![0]!);
    return unknown;
  };
}

/** Read a duration field that passed the schema; throws a 400 naming it when unparsable. */
export function durationField(body: Record<string, unknown>, field: string): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  const parsed = parseDuration(value);
  if (typeof parsed === 'string') throw errors.BAD_FIELD(field, parsed);
  return parsed;
}

export function listField(body: Record<string, unknown>, field: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  const items = Array.isArray(value) ? (value as string[]) : String(value).split(',');
  return items.map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * Statement lists (Vault's TypeStringSlice): a single string is one statement
 * block, never split on commas (`GRANT SELECT, INSERT ...`, JSON statements).
 */
export function statementsField(body: Record<string, unknown>, field: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  const items = Array.isArray(value) ? (value as string[]) : [String(value)];
  return items.map((s) => s.trim()).filter((s) => s.length > 0);
}
