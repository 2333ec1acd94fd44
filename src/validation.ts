import type { z } from 'zod'

/** `models["minimaxai/minimax-m2.1"].defaults.top_p`: a path a person can find in their file. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else if (typeof part === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) out += out ? `.${part}` : part
    else out += `[${JSON.stringify(String(part))}]`
  }
  return out
}

/** One line per problem: `path: why`. Unknown keys are named with their own path. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], root = ''): string[] {
  const lines: string[] = []
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        lines.push(`${formatPath([...(root ? [root] : []), ...issue.path, key])}: unknown field`)
      }
      continue
    }
    const where = formatPath([...(root ? [root] : []), ...issue.path]) || '(root)'
    lines.push(`${where}: ${issue.message}`)
  }
  return lines
}

/** The path of the first issue, for the `param` of an OpenAI error. */
export function firstIssuePath(issues: readonly z.core.$ZodIssue[]): string | null {
  const issue = issues[0]
  if (!issue) return null
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0] ?? ''] : issue.path
  return formatPath(path) || null
}
