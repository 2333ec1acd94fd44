/** Reads an OpenAI SDK stream as its users do, until it ends or raises: the text, and what it raised. */
export async function readStream(
  stream: AsyncIterable<{ choices: { delta: { content?: string | null } }[] }>,
): Promise<{ text: string; failure: unknown }> {
  let text = ''
  try {
    for await (const part of stream) text += part.choices[0]?.delta.content ?? ''
    return { text, failure: null }
  } catch (err) {
    return { text, failure: err }
  }
}
