import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { api, useSession, type Session } from './api.js'
import { SignIn } from './SignIn.js'
import { TeamPage } from './TeamPage.js'
import { TeamsPage } from './TeamsPage.js'
import { TeamViewPage } from './TeamViewPage.js'
import { UpstreamsPage } from './UpstreamsPage.js'
import { UsagePage } from './UsagePage.js'
import './style.css'

/** The page a hash names (#/teams, #/teams/<id>, #/usage, #/upstreams); a client key has only its team. */
function Page({ session, route }: { session: Session; route: string }) {
  if (session.role === 'team') return <TeamViewPage />
  const team = /^#\/teams\/(.+)$/.exec(route)
  if (team) return <TeamPage id={decodeURIComponent(team[1]!)} />
  if (route === '#/usage') return <UsagePage />
  if (route === '#/upstreams') return <UpstreamsPage />
  return <TeamsPage />
}

function useRoute(): string {
  const [route, setRoute] = useState(location.hash)
  useEffect(() => {
    const changed = () => setRoute(location.hash)
    addEventListener('hashchange', changed)
    return () => removeEventListener('hashchange', changed)
  }, [])
  return route
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined)
  const [notice, setNotice] = useState<string | null>(null)
  const route = useRoute()
  useSession(session ?? null, () => {
    setNotice('Your session ended. Sign in again.')
    setSession(null)
  })
  useEffect(() => {
    api<Session>('GET', '/console/api/session').then(setSession, () => setSession(null))
  }, [])

  if (session === undefined) return <p aria-busy="true">Loading…</p>
  if (session === null)
    return (
      <SignIn
        notice={notice}
        onSignedIn={(s) => {
          setNotice(null)
          setSession(s)
        }}
      />
    )
  const signOut = async () => {
    await api('DELETE', '/console/api/session').catch(() => undefined)
    setNotice('Signed out.')
    setSession(null)
  }
  const link = (href: string, text: string) => (
    <a href={href} aria-current={route === href || (href === '#/teams' && route.startsWith('#/teams')) ? 'page' : undefined}>
      {text}
    </a>
  )
  return (
    <>
      <header class="top">
        <span class="brand">Tollgate</span>
        <nav aria-label="Console">
          {session.role === 'admin' ? (
            <>
              {link('#/teams', 'Teams')}
              {link('#/usage', 'Usage')}
              {link('#/upstreams', 'Upstreams')}
            </>
          ) : (
            <span>Team {session.team}</span>
          )}
        </nav>
        <button type="button" class="secondary" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page session={session} route={route} />
      </main>
    </>
  )
}

render(<App />, document.getElementById('app')!)
