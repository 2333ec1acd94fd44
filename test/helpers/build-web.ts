/**
 * Vitest's global setup: the web console's page is built once (web/build.mjs, into dist/web) before
 * any test, so the gateway under test serves the page of the source being tested.
 */
// @ts-expect-error: the build script is plain JavaScript, without types
import { buildWeb } from '../../web/build.mjs'

export default async function setup(): Promise<void> {
  await (buildWeb as () => Promise<void>)()
}
