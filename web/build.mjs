// The web console's build: web/src bundled by esbuild into dist/web (one script, one stylesheet,
// the page), which the gateway serves at /console. No CDN: everything the page loads is here.
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const here = (path) => fileURLToPath(new URL(path, import.meta.url))

/** Builds the console into `out` (dist/web by default). */
export async function buildWeb(out = here('../dist/web/')) {
  rmSync(out, { recursive: true, force: true })
  mkdirSync(`${out}/assets`, { recursive: true })
  await esbuild.build({
    entryPoints: { app: here('src/main.tsx') },
    bundle: true,
    minify: true,
    sourcemap: true,
    format: 'esm',
    target: ['chrome120', 'firefox120', 'safari17'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: `${out}/assets`,
    logLevel: 'warning',
  })
  copyFileSync(here('index.html'), `${out}/index.html`)
  copyFileSync(here('favicon.svg'), `${out}/favicon.svg`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildWeb()
