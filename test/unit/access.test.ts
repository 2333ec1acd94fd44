import { describe, expect, it } from 'vitest'
import { allowedModelsSchema, allows, listAllows } from '../../src/access.js'

describe('allowed_models patterns', () => {
  it('match names without regard to case: * within a segment, ** across segments, ? one character', () => {
    const list = ['minimaxai/*', 'meta/llama-3.?-*', 'nvidia/**']
    const cases: [string, boolean][] = [
      ['minimaxai/minimax-m2.1', true],
      ['MiniMaxAI/MiniMax-M2.1', true],
      ['minimaxai/a/b', false],
      ['meta/llama-3.1-8b-instruct', true],
      ['meta/llama-3.10-8b', false],
      ['meta/llama-4-scout', false],
      ['nvidia/a/b/c', true],
      ['other/minimaxai', false],
    ]
    for (const [name, expected] of cases) expect([name, listAllows(list, [name])]).toEqual([name, expected])
  })

  it('let everything through when null or absent, nothing when empty; a key narrows its team', () => {
    expect(listAllows(null, ['x/y'])).toBe(true)
    expect(listAllows(undefined, ['x/y'])).toBe(true)
    expect(listAllows([], ['x/y'])).toBe(false)
    expect(allows({ team: ['a/*'], key: ['**'] }, ['b/c'])).toBe(false)
    expect(allows({ team: ['**'], key: ['a/*'] }, ['b/c'])).toBe(false)
    expect(allows({ team: ['a/*', 'b/*'], key: ['b/c'] }, ['b/c'])).toBe(true)
    // Any of the names passes a list: an alias by its own name, or by its target.
    expect(allows({ team: ['alias'], key: null }, ['alias', 'a/target'])).toBe(true)
  })

  it('refuse what is not a name or a plain glob, saying why', () => {
    const problem = (value: unknown) => {
      const result = allowedModelsSchema.safeParse(value)
      return result.success ? null : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
    }
    expect(problem(['minimaxai/*', 'meta/llama-3.1-*', '**', 'a:b@c+d'])).toBeNull()
    expect(problem(null)).toBeNull()
    expect(problem('minimaxai/*')).toEqual([': must be a list of model names or patterns, or null for every model'])
    expect(problem([''])).toEqual(['0: must not be empty'])
    expect(problem(['a b'])?.[0]).toContain('may hold only letters')
    expect(problem(['{a,b}'])?.[0]).toContain('may hold only letters')
    expect(problem(['!a'])?.[0]).toContain('may hold only letters')
    expect(problem(['a//b'])?.[0]).toContain('empty path segment')
    expect(problem(['/a'])?.[0]).toContain('empty path segment')
    expect(problem(['x'.repeat(257)])?.[0]).toContain('at most 256')
  })
})
