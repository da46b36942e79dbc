/**
 * Typed metadata filters and the one place that turns them into Milvus boolean expressions.
 *
 * Callers never send expression text: a filter is a list of `{ field, op, value }` conditions (ANDed)
 * and `{ any: [...] }` / `{ all: [...] }` groups, validated against an allow-list of fields, with values
 * type-checked per field and every string escaped here. {@link buildFilterExpression} always puts the
 * tenant predicate first, from the caller's identity, so no filter can widen a result to another tenant.
 *
 * Expressions are built for the subset that Milvus Lite 3.x and Milvus 2.x evaluate alike: no filter
 * templates (Lite rejects them), no `in` on JSON paths (Lite rejects it; it is expanded into `==`/`or`),
 * and no LIKE escapes (Lite ignores them once a JSON path is in the same expression).
 */
import { z } from "zod";
import { invalidInput, ValidationError } from "../errors.ts";
import type { RecordKind } from "./record-id.ts";

/** Filter operators. */
export const FILTER_OPS = ["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "exists"] as const;
/** A filter operator. */
export type FilterOp = (typeof FILTER_OPS)[number];

/** Longest string a filter value may hold, in UTF-16 code units. */
export const MAX_FILTER_STRING_LENGTH = 1024;
/** Most values an `in` / `nin` list may hold. */
export const MAX_FILTER_LIST_LENGTH = 100;
/** Most items in one group (the top-level list included). */
export const MAX_FILTER_GROUP_ITEMS = 32;
/** Most conditions in a whole filter. */
export const MAX_FILTER_CONDITIONS = 64;
/** How deep `any` / `all` groups may nest inside the top-level list. */
export const MAX_FILTER_GROUP_DEPTH = 3;
/** Largest magnitude a numeric filter value may have (timestamps in ms are ~1.8e12). */
export const MAX_FILTER_NUMBER = 1e15;

type FieldType = "string" | "integer" | "float";

/** Top-level fields a filter may name, with their type and the record kinds that have them. */
const SCALAR_FIELDS: Record<string, { type: FieldType; kinds: readonly RecordKind[] }> = {
  id: { type: "string", kinds: ["image", "video_segment", "triple", "region"] },
  source: { type: "string", kinds: ["image", "video_segment", "triple", "region"] },
  model_id: { type: "string", kinds: ["image", "video_segment", "triple", "region"] },
  media_ref: { type: "string", kinds: ["image", "video_segment", "triple", "region"] },
  text: { type: "string", kinds: ["image", "video_segment", "triple", "region"] },
  created_at: { type: "integer", kinds: ["image", "video_segment", "triple", "region"] },
  video_id: { type: "string", kinds: ["video_segment"] },
  keyframe_ref: { type: "string", kinds: ["video_segment"] },
  start_s: { type: "float", kinds: ["video_segment"] },
  end_s: { type: "float", kinds: ["video_segment"] },
  question: { type: "string", kinds: ["triple"] },
  answer: { type: "string", kinds: ["triple"] },
  parent_id: { type: "string", kinds: ["region"] },
  parent_kind: { type: "string", kinds: ["region"] },
  label: { type: "string", kinds: ["region"] },
  score: { type: "float", kinds: ["region"] },
};

/** Names of the top-level fields a filter may name. */
export const FILTERABLE_FIELDS: readonly string[] = Object.keys(SCALAR_FIELDS);

/** Keys of `metadata.<key>`: an identifier, so it can never close the `["…"]` it is written into. */
export const METADATA_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const METADATA_PREFIX = "metadata.";
const ALLOWED_FIELDS_TEXT = `${FILTERABLE_FIELDS.join(", ")} or metadata.<key> (key: letters, digits and _, not starting with a digit, at most 64 characters)`;

/** A scalar filter value. */
export type FilterScalar = string | number | boolean;
/** A filter value: a scalar, or a list for `in` / `nin`. */
export type FilterValue = FilterScalar | string[] | number[];

/** One condition on one field. */
export interface FilterCondition {
  /** A name from {@link FILTERABLE_FIELDS} or `metadata.<key>`. */
  field: string;
  op: FilterOp;
  /** Absent only for `exists` (which also takes `true` / `false`). */
  value?: FilterValue;
}

/** A condition or a group: `any` holds when one of its items holds, `all` when every item holds. */
export type FilterItem = FilterCondition | { any: FilterItem[] } | { all: FilterItem[] };

/** A filter: its items must all hold. */
export type FilterSpec = FilterItem[];

// Control characters are refused rather than escaped: Milvus Lite rejects raw newlines inside string
// literals and its escape set differs from Milvus's beyond \" and \\.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const filterStringSchema = z
  .string()
  .max(MAX_FILTER_STRING_LENGTH, `strings are limited to ${MAX_FILTER_STRING_LENGTH} characters`)
  .refine(
    (value) => !CONTROL_CHARACTERS.test(value),
    "control characters (U+0000–U+001F, U+007F) are not allowed",
  )
  .refine((value) => !LONE_SURROGATE.test(value), "the string is not well-formed Unicode (lone surrogate)");

const filterNumberSchema = z
  .number()
  .min(-MAX_FILTER_NUMBER, `numbers must lie within ±${MAX_FILTER_NUMBER}`)
  .max(MAX_FILTER_NUMBER, `numbers must lie within ±${MAX_FILTER_NUMBER}`);

const filterValueSchema = z.union(
  [
    filterStringSchema,
    filterNumberSchema,
    z.boolean(),
    z.array(filterStringSchema).min(1).max(MAX_FILTER_LIST_LENGTH),
    z.array(filterNumberSchema).min(1).max(MAX_FILTER_LIST_LENGTH),
  ],
  {
    error: `value must be a string, a number, a boolean, or a list of 1 to ${MAX_FILTER_LIST_LENGTH} strings or of 1 to ${MAX_FILTER_LIST_LENGTH} numbers`,
  },
);

const itemMessage =
  "each filter item is a condition { field, op, value } or a group { any: [...] } / { all: [...] }";

function itemSchema(groupDepthLeft: number): z.ZodType<FilterItem> {
  const condition = {
    field: z.string().max(80).optional(),
    op: z.enum(FILTER_OPS).optional(),
    value: filterValueSchema.optional(),
  };
  const shape =
    groupDepthLeft > 0
      ? {
          ...condition,
          any: z
            .array(itemSchema(groupDepthLeft - 1))
            .min(1)
            .max(MAX_FILTER_GROUP_ITEMS)
            .optional(),
          all: z
            .array(itemSchema(groupDepthLeft - 1))
            .min(1)
            .max(MAX_FILTER_GROUP_ITEMS)
            .optional(),
        }
      : condition;
  const schema = z
    .strictObject(shape, {
      error: (issue) =>
        issue.code === "unrecognized_keys"
          ? `unknown key(s) ${issue.keys.map((key) => JSON.stringify(key)).join(", ")}: ${itemMessage}; groups nest at most ${MAX_FILTER_GROUP_DEPTH} deep`
          : undefined,
    })
    .superRefine((item, ctx) => {
      const keys = Object.keys(item).filter((key) => (item as Record<string, unknown>)[key] !== undefined);
      const isGroup = keys.includes("any") || keys.includes("all");
      if (isGroup) {
        if (keys.length !== 1)
          ctx.addIssue({ code: "custom", message: `a group has exactly one key; ${itemMessage}` });
        return;
      }
      if (item.field === undefined || item.op === undefined) {
        ctx.addIssue({ code: "custom", message: itemMessage });
        return;
      }
      const problem = checkCondition({ field: item.field, op: item.op, value: item.value });
      if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
    });
  // The schema's output is validated to this shape by the refinement above; zod cannot infer the
  // "exactly one of condition / any / all" union from optional keys.
  return schema as unknown as z.ZodType<FilterItem>;
}

function countConditions(items: readonly FilterItem[]): number {
  let count = 0;
  for (const item of items) {
    if ("any" in item) count += countConditions(item.any);
    else if ("all" in item) count += countConditions(item.all);
    else count += 1;
  }
  return count;
}

/**
 * The zod schema of a filter: a list of conditions and groups, all of which must hold. It rejects
 * unknown fields and operators, values of the wrong type, `tenant` (the server scopes every call to the
 * caller's tenant) and expression strings.
 */
export const filterSpecSchema: z.ZodType<FilterSpec> = z
  .array(itemSchema(MAX_FILTER_GROUP_DEPTH), {
    error: (issue) =>
      issue.code === "invalid_type"
        ? "a filter is a list of conditions { field, op, value }; expression strings are not accepted"
        : undefined,
  })
  .max(MAX_FILTER_GROUP_ITEMS)
  .superRefine((items, ctx) => {
    const count = countConditions(items);
    if (count > MAX_FILTER_CONDITIONS) {
      ctx.addIssue({
        code: "custom",
        message: `the filter has ${count} conditions; the limit is ${MAX_FILTER_CONDITIONS}`,
      });
    }
  });

function fieldType(field: string): FieldType | "metadata" | undefined {
  if (field.startsWith(METADATA_PREFIX)) {
    return METADATA_KEY_PATTERN.test(field.slice(METADATA_PREFIX.length)) ? "metadata" : undefined;
  }
  return Object.hasOwn(SCALAR_FIELDS, field) ? SCALAR_FIELDS[field]?.type : undefined;
}

function isNumberList(value: FilterValue | undefined): value is number[] {
  return Array.isArray(value) && value.every((element) => typeof element === "number");
}

function isStringList(value: FilterValue | undefined): value is string[] {
  return Array.isArray(value) && value.every((element) => typeof element === "string");
}

/** Returns what is wrong with a condition, or undefined when it is valid for some record kind. */
function checkCondition({ field, op, value }: FilterCondition): string | undefined {
  const type = fieldType(field);
  const shown = JSON.stringify(field);
  if (type === undefined) return `field ${shown} is not filterable; allowed: ${ALLOWED_FIELDS_TEXT}`;
  const isMetadata = type === "metadata";
  const isNumeric = type === "integer" || type === "float";
  const valueText = JSON.stringify(value);

  if (op === "exists") {
    if (!isMetadata) return `op "exists" applies to metadata.<key> fields only; ${shown} always exists`;
    if (value !== undefined && typeof value !== "boolean") {
      return `op "exists" takes no value or true/false; got ${valueText}`;
    }
    return undefined;
  }
  if (value === undefined) return `op ${JSON.stringify(op)} on ${shown} needs a value`;

  if (op === "in" || op === "nin") {
    const listOk = isMetadata
      ? isStringList(value) || isNumberList(value)
      : isNumeric
        ? isNumberList(value)
        : isStringList(value);
    if (!listOk) {
      return `op "${op}" on ${shown} needs a list of 1–${MAX_FILTER_LIST_LENGTH} ${isNumeric ? "numbers" : isMetadata ? "strings or numbers (not mixed)" : "strings"}`;
    }
    if (type === "integer" && isNumberList(value) && !value.every((element) => Number.isInteger(element))) {
      return `${shown} holds integers; got ${valueText}`;
    }
    return undefined;
  }
  if (Array.isArray(value)) return `op ${JSON.stringify(op)} takes one value, not a list; use "in" for lists`;

  if (op === "gt" || op === "gte" || op === "lt" || op === "lte") {
    if (!isNumeric && !isMetadata) return `op "${op}" compares numbers; ${shown} holds strings`;
    if (typeof value !== "number") return `op "${op}" needs a number; got ${valueText}`;
  } else if (op === "contains") {
    if (isNumeric) return `op "contains" does not apply to the number field ${shown}`;
    if (!isMetadata) {
      if (typeof value !== "string" || value.length === 0) {
        return `op "contains" on ${shown} needs a non-empty string; got ${valueText}`;
      }
      // Milvus Lite ignores LIKE escapes once a JSON path is in the expression, so a literal % _ or \
      // cannot be matched reliably on both engines; refusing them keeps "contains" exact.
      if (/[%_\\]/.test(value)) {
        return `op "contains" cannot match the characters % _ \\ (got ${valueText}); use "eq" for an exact match`;
      }
    }
  } else if (isMetadata) {
    // eq / ne on metadata take any scalar.
  } else if (isNumeric ? typeof value !== "number" : typeof value !== "string") {
    return `${shown} holds ${isNumeric ? "numbers" : "strings"}; got ${valueText}`;
  }
  if (type === "integer" && typeof value === "number" && !Number.isInteger(value)) {
    return `${shown} holds integers; got ${valueText}`;
  }
  return undefined;
}

/**
 * Quotes a string as a Milvus expression literal: backslash and double quote escaped, control
 * characters and lone surrogates refused (they never reach Milvus).
 */
export function quoteExpressionString(value: string): string {
  if (CONTROL_CHARACTERS.test(value) || LONE_SURROGATE.test(value)) {
    throw new ValidationError(
      `A filter string holds a control character or a lone surrogate: ${JSON.stringify(value.slice(0, 80))}. Remove it.`,
      { context: { value: value.slice(0, 80) } },
    );
  }
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

function literal(value: FilterScalar): string {
  if (typeof value === "string") return quoteExpressionString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  // Magnitudes are bounded, so String() gives plain decimal notation or a small exponent form
  // (1e-7) that both Milvus grammars accept.
  return String(value);
}

function fieldReference(field: string): string {
  if (field.startsWith(METADATA_PREFIX))
    return `metadata[${quoteExpressionString(field.slice(METADATA_PREFIX.length))}]`;
  return field;
}

const COMPARISONS: Partial<Record<FilterOp, string>> = {
  eq: "==",
  ne: "!=",
  gt: ">",
  gte: ">=",
  lt: "<",
  lte: "<=",
};

function conditionExpression({ field, op, value }: FilterCondition): string {
  const reference = fieldReference(field);
  const isMetadata = field.startsWith(METADATA_PREFIX);
  if (op === "exists") return value === false ? `not (exists ${reference})` : `exists ${reference}`;
  if (value === undefined) throw new Error(`unreachable: op ${op} without a value passed validation`);
  if (op === "in" || op === "nin") {
    const values = (value as FilterScalar[]).map(literal);
    if (!isMetadata) return `${reference} ${op === "in" ? "in" : "not in"} [${values.join(", ")}]`;
    // Milvus Lite has no `in` on JSON paths; a chain of comparisons means the same on both engines.
    const parts = values.map((text) => `${reference} ${op === "in" ? "==" : "!="} ${text}`);
    return `(${parts.join(op === "in" ? " or " : " and ")})`;
  }
  if (Array.isArray(value)) throw new Error(`unreachable: op ${op} with a list passed validation`);
  if (op === "contains") {
    if (isMetadata) return `json_contains(${reference}, ${literal(value)})`;
    return `${reference} like ${quoteExpressionString(`%${String(value)}%`)}`;
  }
  const comparison = COMPARISONS[op];
  if (comparison === undefined) throw new Error(`unreachable: unknown op ${op} passed validation`);
  return `${reference} ${comparison} ${literal(value)}`;
}

function itemExpression(item: FilterItem, kind: RecordKind | undefined): string {
  if ("any" in item) return `(${item.any.map((inner) => itemExpression(inner, kind)).join(" or ")})`;
  if ("all" in item) return `(${item.all.map((inner) => itemExpression(inner, kind)).join(" and ")})`;
  if (kind !== undefined && !item.field.startsWith(METADATA_PREFIX)) {
    const kinds = SCALAR_FIELDS[item.field]?.kinds ?? [];
    if (!kinds.includes(kind)) {
      const allowed = FILTERABLE_FIELDS.filter((name) => SCALAR_FIELDS[name]?.kinds.includes(kind));
      throw new ValidationError(
        `Field ${JSON.stringify(item.field)} does not exist on ${kind} records; allowed: ${allowed.join(", ")} or metadata.<key>.`,
        { context: { field: item.field, kind } },
      );
    }
  }
  return `(${conditionExpression(item)})`;
}

/**
 * Validates untrusted input as a {@link FilterSpec}.
 *
 * @throws ValidationError naming each problem and what is allowed.
 */
export function parseFilterSpec(input: unknown): FilterSpec {
  const result = filterSpecSchema.safeParse(input, { reportInput: true });
  if (!result.success) throw invalidInput(result.error, { subject: "filter", root: "filter" });
  return result.data;
}

/** Options of {@link buildFilterExpression}. */
export interface BuildFilterExpressionOptions {
  /** The caller's tenant, from the server's identity of the caller; never from a request body. */
  tenant: string;
  /** The filter; validated again here, so unchecked input cannot slip through. */
  filter?: unknown;
  /** The record kind queried; when given, fields that kind lacks are refused. */
  kind?: RecordKind;
}

/**
 * Builds the Milvus boolean expression for a tenant and an optional filter:
 * `tenant == "<tenant>"` first, then each filter item in parentheses, joined by `and`.
 *
 * @throws ValidationError when the filter or the tenant is invalid.
 */
export function buildFilterExpression({ tenant, filter, kind }: BuildFilterExpressionOptions): string {
  assertValidTenant(tenant);
  const tenantClause = `tenant == ${quoteExpressionString(tenant)}`;
  if (filter === undefined) return tenantClause;
  const spec = parseFilterSpec(filter);
  if (spec.length === 0) return tenantClause;
  return [tenantClause, ...spec.map((item) => itemExpression(item, kind))].join(" and ");
}

/** Tenants Loupe stores: 1–128 letters, digits and `_ . @ : -`. */
export const TENANT_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;

/**
 * Checks a tenant id before it scopes a Milvus call.
 *
 * @throws ValidationError when the tenant is empty, too long or holds other characters.
 */
export function assertValidTenant(tenant: unknown): asserts tenant is string {
  if (typeof tenant !== "string" || !TENANT_PATTERN.test(tenant)) {
    throw new ValidationError(
      `Invalid tenant ${JSON.stringify(String(tenant).slice(0, 80))}: use 1–128 letters, digits, _ . @ : or -.`,
      { context: { tenant: String(tenant).slice(0, 80) } },
    );
  }
}
