import { parse as parseYaml, YAMLParseError } from 'yaml'
import { z } from 'zod'
import { allowedModelsSchema } from '../access.js'
import { limitsSchema } from '../limits.js'
import { priceSchema } from '../spend.js'
import { describeIssues } from '../validation.js'

/** The YAML file (TOLLGATE_CONFIG): upstreams, models, aliases, defaults, quotas, keys, teams. */

/** Fields a default must never set: they are the request itself, not a parameter of it. */
const RESERVED_DEFAULT_FIELDS = ['model', 'messages', 'prompt', 'input', 'stream', 'stream_options']

const timeoutMs = z.int().min(1).max(3_600_000)

const reserved = z.undefined({ error: 'cannot be a default: it is part of the request itself' }).optional()

const defaultsSchema = z.looseObject({
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  max_tokens: z.int().min(1).optional(),
  max_completion_tokens: z.int().min(1).optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  seed: z.int().optional(),
  stop: z.union([z.string(), z.array(z.string())]).optional(),
  ...Object.fromEntries(RESERVED_DEFAULT_FIELDS.map((field) => [field, reserved])),
})

const envVarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'must be an environment variable name' })

export const fileSchema = z.strictObject({
  upstreams: z
    .record(
      z.string().regex(/^[A-Za-z0-9_.-]+$/, { error: 'upstream names use letters, digits, _ . -' }),
      z.strictObject({
        base_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
        api_key_env: envVarName.optional(),
        status_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
        timeouts: z
          .strictObject({ connect_ms: timeoutMs.optional(), headers_ms: timeoutMs.optional(), idle_ms: timeoutMs.optional() })
          .optional(),
        key_requests_per_minute: z.union([z.int().min(1), z.array(z.int().min(1).nullable())]).optional(),
        retries: z.int().min(0).max(10).optional(),
        retry_base_ms: z.int().min(0).max(60_000).optional(),
        key_wait_ms: z.int().min(0).max(600_000).optional(),
      }),
    )
    .optional(),
  default_upstream: z.string().nullable().optional(),
  models: z
    .record(
      z.string().min(1),
      z.strictObject({
        upstream: z.string().optional(),
        upstream_model: z.string().min(1).optional(),
        defaults: defaultsSchema.optional(),
        price: priceSchema.optional(),
        fallbacks: z.array(z.string().min(1)).max(10).optional(),
      }),
    )
    .optional(),
  aliases: z.record(z.string().min(1), z.string().min(1)).optional(),
  models_cache_seconds: z.int().min(0).max(86_400).optional(),
  alerts: z
    .strictObject({
      webhook_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
      /** The HMAC key, here or (better) in an environment variable named by secret_env. */
      secret: z.string().min(16, { error: 'must be at least 16 characters' }).optional(),
      secret_env: envVarName.optional(),
      thresholds: z
        .array(z.number().gt(0, { error: 'must be above 0' }).max(1, { error: 'must be at most 1' }))
        .min(1)
        .max(10)
        .refine((t) => new Set(t).size === t.length, { error: 'must not repeat a threshold' })
        .optional(),
    })
    .refine((a) => (a.secret === undefined) !== (a.secret_env === undefined), { error: 'give one of secret and secret_env' })
    .optional(),
  quotas: z
    .strictObject({
      default_completion_tokens: z.int().min(1).max(10_000_000).optional(),
      usage_retention_days: z.int().min(1).max(3_650).optional(),
      audit_max_len: z.int().min(0).max(100_000_000).optional(),
      auth_failures_per_minute: z.int().min(1).max(1_000_000).optional(),
    })
    .optional(),
  keys: z
    .strictObject({
      rotation_grace_seconds: z
        .int()
        .min(0)
        .max(30 * 86_400)
        .optional(),
    })
    .optional(),
  console: z
    .strictObject({
      session_seconds: z
        .int()
        .min(60)
        .max(7 * 86_400)
        .optional(),
    })
    .optional(),
  teams: z
    .record(
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'team ids are 1 to 64 letters, digits, ".", "_" or "-"' }),
      z.strictObject({
        name: z.string().min(1).max(200).optional(),
        limits: limitsSchema.optional(),
        model_limits: z.record(z.string().min(1), limitsSchema).optional(),
        allowed_models: allowedModelsSchema.optional(),
        end_user_limits: limitsSchema.optional(),
      }),
    )
    .optional(),
})

export type FileConfig = z.infer<typeof fileSchema>

export type ReadFile = (path: string) => string

/** The file, checked; each problem found goes to `problems` (and the file counts as empty). */
export function readConfigFile(path: string, readFile: ReadFile, problems: string[]): FileConfig {
  let text: string
  try {
    text = readFile(path)
  } catch (err) {
    problems.push(`TOLLGATE_CONFIG: cannot read ${path}: ${(err as Error).message}`)
    return {}
  }
  let data: unknown
  try {
    data = parseYaml(text)
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` (line ${err.linePos[0].line})` : ''
    problems.push(`${path}${where}: not valid YAML: ${(err as Error).message.split('\n')[0]}`)
    return {}
  }
  if (data === null || data === undefined) return {}
  const parsed = fileSchema.safeParse(data)
  if (!parsed.success) {
    problems.push(...describeIssues(parsed.error.issues).map((line) => `${path}: ${line}`))
    return {}
  }
  return parsed.data
}
