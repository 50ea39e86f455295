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

/** Go's strconv.ParseBool spellings, which Vault's framework accepts for TypeBool. */
const BOOL_STRINGS: Record<string, boolean> = { '1': true, t: true, T: true, TRUE: true, true: true, True: true, '0': false, f: false, F: false, FALSE: false, false: false, False: false };

/**
 * A string given for a boolean or integer field, as the Vault CLI sends every
 * `key=value` (`vault write database/config/x verify_connection=false
 * max_open_connections=3`), converted the way Vault's framework decodes it
 * (sdk/framework/field_data.go: TypeBool via strconv.ParseBool, TypeInt via
 * strconv). Anything else is left for the schema to refuse.
 */
function fromString(schema: Record<string, unknown>, v: unknown): unknown {
  if (typeof v !== 'string') return v;
  if (schema.type === 'boolean' && Object.hasOwn(BOOL_STRINGS, v)) return BOOL_STRINGS[v];
  if ((schema.type === 'integer' || schema.type === 'number') && /^-?\d{1,15}$/.test(v.trim())) return Number(v.trim());
  return v;
}

/**
 * Normalise `value` in place at every level the schema describes: remove
 * every field the schema does not declare where it says
 * `additionalProperties: false` (their dotted names are pushed to `out`),
 * and turn strings given for boolean and integer fields into those types.
 * Walks the schema, so its depth is bounded by the schema, never by the input.
 */
function normalize(schema: Record<string, unknown>, value: unknown, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
  const properties = schema.properties as Record<string, Record<string, unknown>> | undefined;
  if (!properties) return;
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (Object.hasOwn(properties, key)) {
      obj[key] = fromString(properties[key]!, obj[key]);
      normalize(properties[key]!, obj[key], `${path}${key}.`, out);
    } else if (schema.additionalProperties === false) {
      out.push(path + key);
      delete obj[key];
    }
  }
}

/**
 * Compile a body schema once. The returned check normalises the body (removes
 * undeclared fields, returning their names for Vault's "unrecognized
 * parameters" warning; converts CLI strings for boolean and integer fields)
 * and then validates what is left.
 * @throws BrokerError 400 naming the first field with a wrong type or value.
 */
export function compile(schema: Record<string, unknown>): (value: unknown) => string[] {
  const validate: ValidateFunction = ajv.compile(schema);
  return (value) => {
    const unknown: string[] = [];
    normalize(schema, value, '', unknown);
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

/**
 * Vault's comma string slices (framework.TypeCommaStringSlice: allowed_roles,
 * policies, ...): a JSON array, a comma-separated string, or a string holding
 * a JSON array of strings. Items are trimmed; empty items are dropped.
 */
export function listField(body: Record<string, unknown>, field: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  const items = Array.isArray(value) ? (value as string[]) : (jsonStringArray(String(value)) ?? String(value).split(','));
  return items.map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * Statement lists (Vault's TypeStringSlice): a JSON array, or a single string
 * that is one statement block, never split on commas (`GRANT SELECT, INSERT
 * ...`, JSON statements). Each block is then decoded as Vault's database
 * plugins do before running it (see decodeStatementBlock), so what is stored
 * is what runs. Empty statements are dropped.
 */
export function statementsField(body: Record<string, unknown>, field: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  const items = Array.isArray(value) ? (value as string[]) : [String(value)];
  return items.flatMap((s) => decodeStatementBlock(s)).map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * One statement block as Vault's plugins read it, with
 * strutil.ParseArbitraryStringSlice (go-secure-stdlib/strutil) minus its final
 * split on ";" (the engines split statements themselves, respecting quotes):
 * the trimmed text is base64-decoded when it is valid standard base64, then,
 * when it is a JSON array of strings, each element is a statement
 * (`null` or `[]`: none); otherwise the text is one block.
 *
 * One deliberate difference: Vault decodes any text that happens to be valid
 * base64 (`ROLLBACK` is) and runs the garbage. Here the decoded bytes are used
 * only if they are UTF-8 text without control characters (tab, CR, LF aside).
 */
export function decodeStatementBlock(text: string): string[] {
  let input = text.trim();
  if (input === '') return [];
  const decoded = decodeBase64Text(input);
  if (decoded !== undefined) input = decoded;
  if (input.trim() === 'null') return [];
  return jsonStringArray(input) ?? [input];
}

// Go's base64.StdEncoding: the standard alphabet with padding; it skips CR and LF.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The text `input` encodes in standard base64, or undefined if it is not base64 of UTF-8 text. */
export function decodeBase64Text(input: string): string | undefined {
  const compact = input.replace(/[\r\n]/g, '');
  if (compact === '' || !BASE64.test(compact)) return undefined;
  let text: string;
  try {
    text = utf8.decode(Buffer.from(compact, 'base64'));
  } catch {
    return undefined;
  }
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text)) return undefined;
  return text;
}

/** `text` as a JSON array of strings, or undefined when it is not one. */
export function jsonStringArray(text: string): string[] | undefined {
  const trimmed = text.trim();
  if (!trimmed.startsWith('[')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed.some((s) => typeof s !== 'string')) return undefined;
  return parsed as string[];
}
