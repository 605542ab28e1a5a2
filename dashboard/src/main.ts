// Entry point: session check, sign-in, hash router (#/ and
// #/device/<id>[?range=1h|24h|7d]),
// theme, the live socket and its "reconnecting" banner.
import './style.css'
import * as api from './api'
import { h, clear } from './dom'
import { LiveSocket, LiveState } from './live'
import { overview } from './overview'
import { devicePage } from './device'

const app = document.getElementById('app')!
let live: LiveSocket | null = null
let teardown: () => void = () => {}

// Theme: follows prefers-color-scheme until the user picks one.
const themeKey = 'fleetwire.theme'
function applyTheme(t: string | null): void {
  if (t === 'dark' || t === 'light') document.documentElement.dataset.theme = t
  else delete document.documentElement.dataset.theme
}
function currentTheme(): 'dark' | 'light' {
  const t = document.documentElement.dataset.theme
  if (t === 'dark' || t === 'light') return t
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'
}
function toggleTheme(): void {
  const next = currentTheme() === 'dark' ? 'light' : 'dark'
  localStorage.setItem(themeKey, next)
  applyTheme(next)
  route() // charts read their colours from CSS variables at creation
}
applyTheme(localStorage.getItem(themeKey))

function signIn(message = ''): void {
  teardown(); teardown = () => {}
  live?.stop(); live = null
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true })
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })
  const error = h('p', { class: 'error', role: 'alert', hidden: !message }, message)
  const button = h('button', { type: 'submit' }, 'Sign in')
  const form = h('form', { class: 'signin', onsubmit: async (e: Event) => {
    e.preventDefault()
    button.disabled = true
    error.hidden = true
    try {
      const u = await api.login(user.value, pass.value)
      start(u)
    } catch (err) {
      const status = err instanceof api.HTTPError ? err.status : 0
      error.textContent = status === 401 ? 'Wrong user name or password.'
        : status === 429 ? 'Too many attempts; wait a minute and try again.'
        : `Sign-in failed: ${(err as Error).message}`
      error.hidden = false
      button.disabled = false
      pass.select()
    }
  } },
  h('h1', {}, 'Fleetwire'),
  h('label', {}, 'User name', user), h('label', {}, 'Password', pass), error, button)
  clear(app)
  app.append(h('main', { class: 'signin-page' }, form))
  user.focus()
}

function start(u: api.User): void {
  const banner = h('div', { class: 'banner', role: 'status', hidden: true })
  const main = h('main', { id: 'view' })
  const header = h('header', { class: 'top' },
    h('a', { href: '#/', class: 'brand' }, 'Fleetwire'),
    h('span', { class: 'spacer' }),
    h('span', { class: 'who' }, `${u.name} · ${u.role}`),
    h('button', { type: 'button', class: 'ghost', title: 'Toggle dark/light theme', onclick: toggleTheme }, '◐ Theme'),
    h('button', { type: 'button', class: 'ghost', id: 'logout', onclick: async () => {
      try { await api.logout() } catch { /* signed out either way */ }
      location.hash = '#/'
      signIn()
    } }, 'Sign out'))
  clear(app)
  app.append(header, banner, main)
  live = new LiveSocket((s: LiveState) => {
    banner.hidden = s === 'open'
    banner.textContent = s === 'connecting' ? 'Connecting…' : 'Live updates lost — reconnecting…'
    banner.dataset.state = s
  }, () => {
    // A refused upgrade looks like any other close: ask whether we are
    // still signed in, and go back to sign-in if not.
    api.me().catch((e) => { if (e instanceof api.HTTPError && e.status === 401) signIn('Your session ended; sign in again.') })
  })
  banner.hidden = false
  banner.textContent = 'Connecting…'
  live.start()
  route()
}

function route(): void {
  const view = document.getElementById('view')
  if (!view || !live) return
  teardown()
  const m = location.hash.match(/^#\/device\/([^?]+)(?:\?(.*))?$/)
  teardown = m ? devicePage(view, live, decodeURIComponent(m[1]), new URLSearchParams(m[2] ?? '').get('range') ?? '')
    : overview(view, live)
}

window.addEventListener('hashchange', route)
api.setUnauthorizedHandler(() => signIn('Your session ended; sign in again.'))
api.me().then(start).catch(() => signIn())
