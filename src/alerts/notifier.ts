import { createHmac } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { AlertSettings } from '../config.js'
import type { Metrics } from '../metrics.js'
import { keyScope, teamScope } from '../quota/http.js'
import { dayEnd, monthEnd, utcDay, utcMonth } from '../quota/periods.js'
import type { QuotaEngine, Scope } from '../quota/types.js'
import type { Principal } from '../store/types.js'
import type { AlertClaims } from './claims.js'

/**
 * Webhook alerts. After a request settles, the day and month quotas and budgets of its team and its
 * key are read; each share of one (config `alerts.thresholds`) that their use has reached in the
 * period is claimed (claims.ts) and, by the one instance that claims it, POSTed once to the webhook
 * as JSON signed with HMAC-SHA256 of the raw body (`x-tollgate-signature: sha256=<hex>`), retried
 * with a doubling backoff until the receiver answers 2xx or the attempts are spent.
 */

export interface AlertEvent {
  team: string
  /** The key, for a key's own limit. */
  key?: string
  /** `tokens_per_day`, `tokens_per_month`, `usd_per_day` or `usd_per_month`. */
  limit: PeriodLimit
  /** The share of the limit crossed, such as 0.8. */
  threshold: number
  used: number
  limit_value: number
  /** The UTC day (YYYY-MM-DD) or month (YYYY-MM). */
  period: string
  resets_at: string
}

type PeriodLimit = 'tokens_per_day' | 'tokens_per_month' | 'usd_per_day' | 'usd_per_month'
const PERIOD_LIMITS: readonly PeriodLimit[] = ['tokens_per_day', 'tokens_per_month', 'usd_per_day', 'usd_per_month']
const ATTEMPTS = 6
const FIRST_BACKOFF_MS = 500
const TIMEOUT_MS = 10_000
/** A claim outlives its period by this much (clock skew between instances). */
const CLAIM_GRACE_MS = 86_400_000

export interface AlertNotifierOptions {
  settings: AlertSettings
  claims: AlertClaims
  quotas: QuotaEngine
  metrics: Metrics
  log: { warn: (obj: object, msg: string) => void; error: (obj: object, msg: string) => void }
}

export class AlertNotifier {
  /** Deliveries under way (awaited at shutdown). */
  private readonly sending = new Set<Promise<void>>()

  constructor(private readonly o: AlertNotifierOptions) {}

  /** After a request of this principal settled: alerts for what its team's and key's use has reached. */
  async afterSettle(principal: Principal, now: number): Promise<void> {
    const scopes = [teamScope(principal.team), keyScope(principal.team, principal.key)].filter(
      (s): s is Scope => s !== null && PERIOD_LIMITS.some((l) => s.limits[l] !== undefined),
    )
    if (scopes.length === 0) return
    const status = await this.o.quotas.status(principal.team.id, scopes, now)
    for (const scope of scopes) {
      for (const limit of PERIOD_LIMITS) {
        const entry = status[scope.id]?.[limit]
        if (entry === undefined || entry.limit <= 0) continue
        const daily = limit.endsWith('_day')
        const period = daily ? utcDay(now) : utcMonth(now)
        const ends = daily ? dayEnd(now) : monthEnd(now)
        for (const threshold of this.o.settings.thresholds) {
          // (A share, with room for the rounding of USD: 0.008 of 0.01 is 80 %.)
          if (entry.used / entry.limit < threshold - 1e-9) break
          const id = `${scope.id}:${limit}:${period}:${threshold}`
          if (!(await this.o.claims.claim(principal.team.id, id, ends - now + CLAIM_GRACE_MS))) continue
          this.send({
            team: principal.team.id,
            ...(scope.id.startsWith('key:') ? { key: principal.key.id } : {}),
            limit,
            threshold,
            used: entry.used,
            limit_value: entry.limit,
            period,
            resets_at: new Date(ends).toISOString(),
          })
        }
      }
    }
  }

  /** Waits for the deliveries under way (at shutdown). */
  async drained(): Promise<void> {
    await Promise.all([...this.sending])
  }

  private send(event: AlertEvent): void {
    const sending = this.deliver(event).finally(() => this.sending.delete(sending))
    this.sending.add(sending)
  }

  private async deliver(event: AlertEvent): Promise<void> {
    const body = JSON.stringify(event)
    const signature = `sha256=${createHmac('sha256', this.o.settings.secret).update(body).digest('hex')}`
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      let problem: string
      try {
        const res = await request(this.o.settings.webhookUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-tollgate-signature': signature },
          body,
          headersTimeout: TIMEOUT_MS,
          bodyTimeout: TIMEOUT_MS,
        })
        await res.body.dump()
        if (res.statusCode >= 200 && res.statusCode < 300) {
          this.o.metrics.alerts.inc({ outcome: 'delivered' })
          return
        }
        problem = `status ${res.statusCode}`
      } catch (err) {
        problem = (err as Error).message
      }
      if (attempt === ATTEMPTS) {
        this.o.metrics.alerts.inc({ outcome: 'failed' })
        this.o.log.error({ team: event.team, limit: event.limit, threshold: event.threshold, problem }, 'could not deliver an alert')
        return
      }
      this.o.metrics.alerts.inc({ outcome: 'retried' })
      this.o.log.warn(
        { team: event.team, limit: event.limit, threshold: event.threshold, problem, attempt },
        'alert not delivered yet; retrying',
      )
      await sleep(FIRST_BACKOFF_MS * 2 ** (attempt - 1))
    }
  }
}
