/** The value of one sample line of Prometheus's exposition text, by name and (some of) its labels. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const match = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const got = Object.fromEntries([...(match[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(match[4])
  }
  return undefined
}

/** An upstream's key counts by state, as a gateway's /metrics has them. */
export async function keyStates(url: string, upstream = 'nvidia'): Promise<Record<string, number | undefined>> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Object.fromEntries(
    ['available', 'at_budget', 'cooling', 'refused'].map((state) => [state, sample(text, 'tollgate_upstream_keys', { upstream, state })]),
  )
}
