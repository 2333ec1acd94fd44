import { Pool } from 'undici'
const [base, auth, n] = [process.argv[2]!, process.argv[3]!, Number(process.argv[4])]
const pool = new Pool(base, { connections: 64 })
const body = JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 32 })
let left = n
const t = Date.now()
await Promise.all(Array.from({ length: 64 }, async () => { while (left-- > 0) { const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json', authorization: auth }, body }); await r.body.text() } }))
console.log('rps', n / ((Date.now() - t) / 1000))
await pool.close()
