/**
 * Every key the gateway writes in Redis, named in one place. Each owner's keys share a hash tag,
 * so its multi-key scripts run on a Redis Cluster too; `prefix` (default `tg:`) lets several
 * gateways or tests share one Redis.
 *
 *   directory (store/redis.ts), tag {dir}:
 *     <prefix>{dir}:teams                 set of team ids
 *     <prefix>{dir}:team:<id>             hash: id name limits model_limits (JSON) created_at updated_at
 *     <prefix>{dir}:teamkeys:<id>         set of the team's key ids
 *     <prefix>{dir}:key:<key id>          hash: the key record ('' stands for null)
 *     <prefix>{dir}:keyhash:<sha256>      hash: the same record, while the key is active
 *     <prefix>changes                     pub/sub channel of directory changes
 *   quotas (quota/redis.ts), tag {t:<team>}:
 *     <prefix>{t:<team>}:<scope>:rpm|tpm|inflight|reserved
 *     <prefix>{t:<team>}:<scope>:d:<YYYY-MM-DD>   <prefix>{t:<team>}:<scope>:m:<YYYY-MM>
 *     <prefix>{t:<team>}:usage:<YYYY-MM-DD>[:h]    usage counters, per day [and per hour] (quota/report.ts)
 *     <prefix>{t:<team>}:settled                   settlements not yet answered (settle.lua)
 *   upstream key pools (upstream/key-pool.ts), tag {u:<upstream>}:
 *     <prefix>{u:<upstream>}:cool|refused         cooldowns and refusals, by key fingerprint
 *     <prefix>{u:<upstream>}:key:<fp>:rpm         a key's one-minute request log
 *   audit (audit/redis.ts):
 *     <prefix>audit                               the audit stream (capped)
 *   web console sessions (console/sessions.ts):
 *     <prefix>session:<sha256 of the cookie's id>  JSON, expiring with the session
 *   failed authentications (@fastify/rate-limit):
 *     <prefix>authfail:<ip>
 */
export class RedisKeys {
  /** The directory's keys all start with this (its scripts build names from it). */
  readonly dir: string
  readonly changes: string
  readonly audit: string
  readonly authFailures: string

  constructor(readonly prefix = 'tg:') {
    this.dir = `${prefix}{dir}:`
    this.changes = `${prefix}changes`
    this.audit = `${prefix}audit`
    this.authFailures = `${prefix}authfail:`
  }

  /** A key of a team's quotas. */
  team(team: string, suffix: string): string {
    return `${this.prefix}{t:${team}}:${suffix}`
  }

  /** A console session, by the digest of its id. */
  session(digest: string): string {
    return `${this.prefix}session:${digest}`
  }

  /** A key of an upstream's key pool. */
  upstream(name: string, suffix: string): string {
    return `${this.prefix}{u:${name}}:${suffix}`
  }
}
