import type { Counter } from 'prom-client'
import type { Metrics } from '../metrics.js'
import { KEY_STATES } from '../upstream/key-pool.js'
import type { Data } from './data.js'
import type { Upstreams } from './upstreams.js'

const NO_BACKLOG = { waiting: 0, dropped: 0 }

/** The /metrics text, with what is read rather than counted (buffers, key pools) brought up to date. */
export async function scrape(metrics: Metrics, data: Data, upstreams: Upstreams, now: () => number): Promise<string> {
  // Counts kept since start elsewhere: the counters take their values.
  const sinceStart = (counter: Counter, count: number) => {
    counter.reset()
    counter.inc(count)
  }
  const backlogs = data.backlogs?.() ?? { usage: NO_BACKLOG, audit: NO_BACKLOG }
  for (const name of ['usage', 'audit'] as const) {
    metrics.buffers[name].size.set(backlogs[name].waiting)
    sinceStart(metrics.buffers[name].dropped, backlogs[name].dropped)
  }
  sinceStart(metrics.localAdmissions, data.localAdmissions())
  // (A pool on Redis answers from the instance's own view when Redis fails: FallbackKeyPool.)
  await Promise.all(
    [...upstreams.pools].map(async ([upstream, pool]) => {
      const states = await pool.states(now())
      for (const state of KEY_STATES) metrics.upstreamKeys.set({ upstream, state }, states[state])
    }),
  )
  return metrics.registry.metrics()
}
