import type { RedisClient } from '../redis/connection.js'
import { RedisKeys } from '../redis/keys.js'
import { LuaScript, type Arg } from '../redis/scripts.js'
import type { AuditEntry, AuditLog } from './types.js'

/** Audit entries per script call, the longest an entry waits, and the values per entry. */
const AUDIT_BATCH = 64
const AUDIT_DELAY_MS = 20
const AUDIT_WIDTH = 28
const NOTHING = Promise.resolve()

export interface RedisAuditOptions {
  client: RedisClient
  prefix?: string
  /** Approximate cap of the audit stream (XADD MAXLEN ~). */
  maxLen?: number
}

/**
 * The audit trail as a capped Redis stream (`<prefix>audit`), written in batches: one script call
 * (audit.lua) for up to AUDIT_BATCH entries, at most AUDIT_DELAY_MS after the first (an XADD per
 * request was a third of the gateway's Redis work).
 */
export class RedisAudit implements AuditLog {
  private readonly script: LuaScript
  private readonly key: string
  private readonly maxLen: number
  /** Entries not yet written, flattened (AUDIT_WIDTH values each), and the entries themselves. */
  private batch: Arg[] = []
  private entries: AuditEntry[] = []
  /** Given the entries of a batch whose write failed; without one, the batch's first call rejects. */
  private failed: ((entries: AuditEntry[]) => void) | null = null
  private timer: NodeJS.Timeout | null = null
  /** Settles the promise of the call that opened the batch waiting now. */
  private opener: { resolve: () => void; reject: (err: unknown) => void } | null = null

  constructor(options: RedisAuditOptions) {
    this.script = new LuaScript(options.client, 'audit')
    this.key = new RedisKeys(options.prefix).audit
    this.maxLen = options.maxLen ?? 100_000
  }

  /**
   * Hands the entries of every batch whose write fails to `handler` (ResilientAudit keeps them
   * until Redis is back); writes then never reject.
   */
  onFailed(handler: (entries: AuditEntry[]) => void): void {
    this.failed = handler
  }

  /**
   * The promise of the call that opens a batch settles with the batch's write, so a failure is
   * reported once per batch; the others resolve at once.
   */
  write(e: AuditEntry): Promise<void> {
    pushEntry(this.batch, e)
    this.entries.push(e)
    let opened = NOTHING
    if (this.opener === null) {
      opened = new Promise<void>((resolve, reject) => (this.opener = { resolve, reject }))
      this.timer = setTimeout(() => void this.flush(), AUDIT_DELAY_MS)
      this.timer.unref()
    }
    if (this.batch.length >= AUDIT_BATCH * AUDIT_WIDTH) void this.flush()
    return opened
  }

  flush(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    const done = this.opener
    this.opener = null
    if (this.batch.length === 0) {
      done?.resolve()
      return NOTHING
    }
    const batch = this.batch
    const entries = this.entries
    this.batch = []
    this.entries = []
    const write = this.send(batch)
    const failed = this.failed
    if (failed === null) {
      write.then(
        () => done?.resolve(),
        (err: unknown) => done?.reject(err),
      )
      return write
    }
    // (A batch that Redis wrote but whose reply was lost comes back too: an entry may be written
    // twice, never lost; its request_id tells the two apart.)
    return write.then(
      () => done?.resolve(),
      () => {
        failed(entries)
        done?.resolve()
      },
    )
  }

  /** Writes these entries now, in one script call (entries kept while Redis was away). Rejects if the write fails. */
  append(entries: AuditEntry[]): Promise<void> {
    const batch: Arg[] = []
    for (const e of entries) pushEntry(batch, e)
    return this.send(batch)
  }

  private send(batch: Arg[]): Promise<void> {
    return this.script.run([this.key], [this.maxLen, AUDIT_WIDTH, ...batch]).then(() => undefined)
  }
}

/** An entry's fields, as the stream's names and values (AUDIT_WIDTH of them). */
function pushEntry(batch: Arg[], e: AuditEntry): void {
  batch.push(
    'time',
    e.time,
    'request_id',
    e.request_id,
    'team',
    e.team,
    'key_id',
    e.key_id,
    'end_user',
    e.end_user,
    'model',
    e.model,
    'endpoint',
    e.endpoint,
    'status',
    e.status,
    'prompt_tokens',
    e.prompt_tokens,
    'completion_tokens',
    e.completion_tokens,
    'total_tokens',
    e.total_tokens,
    'estimated',
    e.estimated ? 1 : 0,
    'cost_usd',
    e.cost_usd,
    'latency_ms',
    e.latency_ms,
  )
}
