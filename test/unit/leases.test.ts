import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { LeaseKeeper } from '../../src/quota/leases.js'
import { MemoryQuotas } from '../../src/quota/memory.js'
import { LEASE_MS, type AdmitResult, type Scope, type Ticket } from '../../src/quota/types.js'

/** The lease keeper renews exactly the requests still in flight, however they come and go. */

const T0 = Date.parse('2026-03-10T12:00:00Z')
const scopes: Scope[] = [{ id: 'team', label: "team 'ml'", limits: { concurrent_requests: 4 } }]
const ok = (r: AdmitResult): Ticket => {
  if (!r.ok) throw new Error(`refused: ${r.refusal.kind}`)
  return r.ticket
}

describe('the lease keeper', () => {
  it('renews the requests in flight and no others, whichever leave and in what order', async () => {
    const quotas = new MemoryQuotas()
    let now = T0
    const keeper = new LeaseKeeper(quotas, () => now, pino({ level: 'silent' }), 3_600_000)
    const tickets = await Promise.all(
      [1, 2, 3, 4].map(async (i) => ok(await quotas.admit({ team: 'ml', requestId: `r${i}`, scopes, tokens: 0, now }))),
    )
    const leases = tickets.map((t) => keeper.add(t))
    expect(keeper.size).toBe(4)
    keeper.remove(leases[2]!) // from the middle
    keeper.remove(leases[3]!) // the newest (the list's head)
    keeper.remove(leases[3]!) // twice: nothing more
    expect(keeper.size).toBe(2)

    // Half a lease on, the keeper renews r1 and r2 only; r3 and r4 were not settled, so their
    // leases simply run out.
    now = T0 + LEASE_MS / 2
    await keeper.renew()
    now = T0 + LEASE_MS + 1
    const status = await quotas.status('ml', scopes, now)
    expect(status.team?.concurrent_requests).toMatchObject({ used: 2 })

    // The last ones leave; a renewal then has nothing to send, and new requests join as before.
    keeper.remove(leases[0]!)
    keeper.remove(leases[1]!)
    expect(keeper.size).toBe(0)
    const fifth = keeper.add(ok(await quotas.admit({ team: 'ml', requestId: 'r5', scopes, tokens: 0, now })))
    expect(keeper.size).toBe(1)
    now += LEASE_MS / 2
    await keeper.renew()
    now += LEASE_MS / 2 + 1
    expect((await quotas.status('ml', scopes, now)).team?.concurrent_requests).toMatchObject({ used: 1 })
    keeper.remove(fifth)
    keeper.close()
  })
})
