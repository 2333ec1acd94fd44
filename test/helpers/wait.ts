/** Polls until `check` holds; fails with `what` if it does not within the bound. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, boundMs = 5_000): Promise<void> {
  const deadline = Date.now() + boundMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
