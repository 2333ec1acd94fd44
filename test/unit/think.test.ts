import { describe, expect, it } from 'vitest'
import { splitThinking, ThinkSplitter, type Piece } from '../../src/adapters/think.js'

/** Joins consecutive pieces of one kind, as a reader would see them. */
function joined(pieces: Piece[]): Piece[] {
  const out: Piece[] = []
  for (const p of pieces) {
    const last = out.at(-1)
    if (last?.kind === p.kind) last.text += p.text
    else out.push({ ...p })
  }
  return out
}

describe('ThinkSplitter', () => {
  const text = '<think>Weigh the options.</think>The answer is 42 <b>bold</b> < 43.'
  const expected = [
    { kind: 'reasoning', text: 'Weigh the options.' },
    { kind: 'text', text: 'The answer is 42 <b>bold</b> < 43.' },
  ]

  it('splits reasoning from text however the content is cut into chunks', () => {
    for (let size = 1; size <= text.length; size++) {
      const splitter = new ThinkSplitter()
      const pieces: Piece[] = []
      for (let i = 0; i < text.length; i += size) pieces.push(...splitter.push(text.slice(i, i + size)))
      pieces.push(...splitter.end())
      expect(joined(pieces), `chunks of ${size}`).toEqual(expected)
    }
  })

  it('holds back at most a tag, and gives back a partial tag the stream ended on', () => {
    const splitter = new ThinkSplitter()
    expect(splitter.push('Hello <thi')).toEqual([{ kind: 'text', text: 'Hello ' }])
    expect(splitter.end()).toEqual([{ kind: 'text', text: '<thi' }])
  })

  it('leaves text without tags as text, and splits a whole answer once', () => {
    expect(splitThinking('no reasoning here')).toEqual({ reasoning: '', text: 'no reasoning here' })
    expect(splitThinking(text)).toEqual({ reasoning: 'Weigh the options.', text: 'The answer is 42 <b>bold</b> < 43.' })
  })
})
