/**
 * Reasoning written inline, as MiniMax-M2 and other open models do: `<think>…</think>` in the
 * content. Split incrementally (a tag may arrive cut across chunks) into reasoning and answer text;
 * at most one partial tag is held back, so memory stays bounded whatever the stream's length.
 */
export interface Piece {
  kind: 'reasoning' | 'text'
  text: string
}

const OPEN = '<think>'
const CLOSE = '</think>'

export class ThinkSplitter {
  private inside = false
  private held = ''

  /** The pieces of this chunk of content (a tag's start at its end waits for the next chunk). */
  push(chunk: string): Piece[] {
    let text = this.held + chunk
    this.held = ''
    const out: Piece[] = []
    for (;;) {
      const tag = this.inside ? CLOSE : OPEN
      const at = text.indexOf(tag)
      if (at === -1) {
        // Hold back what could be the start of the tag.
        const keep = partialTagAt(text, tag)
        this.emit(out, text.slice(0, text.length - keep))
        this.held = text.slice(text.length - keep)
        return out
      }
      this.emit(out, text.slice(0, at))
      text = text.slice(at + tag.length)
      this.inside = !this.inside
    }
  }

  /** What is held at the end (a stream that ended on `<thi`). */
  end(): Piece[] {
    const out: Piece[] = []
    this.emit(out, this.held)
    this.held = ''
    return out
  }

  private emit(out: Piece[], text: string): void {
    if (text === '') return
    out.push({ kind: this.inside ? 'reasoning' : 'text', text })
  }
}

/** How many characters at the end of `text` begin `tag`. */
function partialTagAt(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (text.endsWith(tag.slice(0, n))) return n
  return 0
}

/** A whole answer's content split once: its reasoning and its text. */
export function splitThinking(content: string): { reasoning: string; text: string } {
  const splitter = new ThinkSplitter()
  const pieces = [...splitter.push(content), ...splitter.end()]
  return {
    reasoning: pieces
      .filter((p) => p.kind === 'reasoning')
      .map((p) => p.text)
      .join(''),
    text: pieces
      .filter((p) => p.kind === 'text')
      .map((p) => p.text)
      .join(''),
  }
}
