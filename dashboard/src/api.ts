// REST client for /api/v1. The session lives in the HttpOnly cookie; the
// CSRF token is kept in memory only and sent on state-changing requests.

export interface User { name: string; role: string }

export interface Device {
  id: string
  labels?: Record<string, string> | null
  created_at?: string
  revoked?: boolean
  last_seen?: string | null
  agent_version?: string
  agent_behind?: boolean // older than the newest agent in the fleet
  transport?: string
  online: boolean
}

// Series is one metric of a device's recent window (hub/live.SeriesSamples).
export interface Series { name: string; tags?: Record<string, string>; t: number[]; v: number[] }

export class HTTPError extends Error {
  constructor(public status: number, message: string) { super(message) }
}

let csrfToken = ''
// The signed-in user, as last reported by login or /me (roles gate the UI;
// the hub enforces them on every call anyway).
let currentUser: User | null = null
let onUnauthorized: () => void = () => {}

export function setUnauthorizedHandler(f: () => void): void { onUnauthorized = f }

async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body), signal,
  })
  if (!resp.ok) {
    const msg = await errorText(resp)
    if (resp.status === 401 && path !== '/api/v1/login' && path !== '/api/v1/me') onUnauthorized()
    throw new HTTPError(resp.status, msg)
  }
  if (resp.status === 204) return undefined as T
  return resp.json() as Promise<T>
}

async function errorText(resp: Response): Promise<string> {
  const text = (await resp.text()).trim()
  try {
    const j = JSON.parse(text)
    if (j && typeof j.error === 'string') return j.error
  } catch { /* plain text */ }
  return text || `${resp.status} ${resp.statusText}`
}

export async function login(username: string, password: string): Promise<User> {
  const r = await request<{ user: User; csrf_token: string }>('POST', '/api/v1/login', { username, password })
  csrfToken = r.csrf_token
  currentUser = r.user
  return r.user
}

export async function me(): Promise<User> {
  const r = await request<{ name: string; role: string; csrf_token?: string }>('GET', '/api/v1/me')
  csrfToken = r.csrf_token ?? ''
  currentUser = { name: r.name, role: r.role }
  return currentUser
}

export async function logout(): Promise<void> {
  try { await request<void>('POST', '/api/v1/logout') } finally { csrfToken = ''; currentUser = null }
}

export async function devices(): Promise<Device[]> {
  const r = await request<{ devices: Device[] | null }>('GET', '/api/v1/devices')
  return r.devices ?? []
}

export async function device(id: string): Promise<Device> {
  const r = await request<{ device: Device }>('GET', `/api/v1/devices/${encodeURIComponent(id)}`)
  return r.device
}

// recent fetches the device's in-memory window. The parser is tolerant:
// series without parallel numeric t/v arrays are dropped, not fatal.
export async function recent(id: string, since = '10m'): Promise<Series[]> {
  const r = await request<{ series?: unknown }>('GET', `/api/v1/devices/${encodeURIComponent(id)}/recent?since=${since}`)
  return parseSeries(r.series)
}

// History is GET /api/v1/devices/{id}/history (hub/dashws.HistoryResponse):
// each t ends an every_seconds window and v is the window's mean.
export interface History { rangeSeconds: number; everySeconds: number; series: Series[] }

// history fetches one metric's stored history over range (1h, 24h or 7d).
export async function history(id: string, metric: string, range: string, signal?: AbortSignal): Promise<History> {
  const q = new URLSearchParams({ metric, range })
  const r = await request<{ range_seconds?: unknown; every_seconds?: unknown; series?: unknown }>(
    'GET', `/api/v1/devices/${encodeURIComponent(id)}/history?${q}`, undefined, signal)
  return {
    rangeSeconds: typeof r.range_seconds === 'number' ? r.range_seconds : 0,
    everySeconds: typeof r.every_seconds === 'number' ? r.every_seconds : 0,
    series: parseSeries(r.series),
  }
}

function parseSeries(raw: unknown): Series[] {
  const out: Series[] = []
  if (!Array.isArray(raw)) return out
  for (const s of raw as Partial<Series>[]) {
    if (!s || typeof s.name !== 'string' || !Array.isArray(s.t) || !Array.isArray(s.v)) continue
    const n = Math.min(s.t.length, s.v.length)
    out.push({ name: s.name, tags: s.tags ?? undefined, t: s.t.slice(0, n), v: s.v.slice(0, n) })
  }
  return out
}

export function user(): User | null { return currentUser }
export function canCommand(): boolean { return currentUser?.role === 'operator' || currentUser?.role === 'admin' }

// Command is hub.Command as the command API returns it.
export interface Command {
  id: string
  bulk_id?: string
  device_id: string
  name: string
  args?: Record<string, string> | null
  sent_by: string
  state: string
  created_at: string
  expires_at?: string
  timeout_ms?: number
  finished_at?: string | null
  exit_code?: number | null
  stdout?: string
  stderr?: string
  truncated?: boolean
  duration_ms?: number
  error?: string
  version: number
}

export interface BulkStatus {
  bulk_id: string
  total: number
  by_state: Record<string, number>
  done: boolean
  commands: Command[] | null
}

export const finalStates = new Set(['succeeded', 'failed', 'timed_out', 'rejected', 'expired', 'canceled'])
export function isFinal(state: string): boolean { return finalStates.has(state) }

export interface SendArgs { name: string; args?: Record<string, string>; ttl?: string; timeout?: string }

export async function sendCommand(deviceID: string, a: SendArgs): Promise<Command> {
  const r = await request<{ command: Command }>('POST', '/api/v1/commands', { device_id: deviceID, ...a })
  return r.command
}

export async function sendBulk(selector: Record<string, string>, a: SendArgs): Promise<BulkStatus> {
  const r = await request<{ bulk: BulkStatus }>('POST', '/api/v1/commands', { selector, ...a })
  return r.bulk
}

export async function commands(deviceID: string, limit = 20): Promise<Command[]> {
  const r = await request<{ commands: Command[] | null }>('GET', `/api/v1/commands?device=${encodeURIComponent(deviceID)}&limit=${limit}`)
  return r.commands ?? []
}

// waitCommand long-polls: the hub answers when the version passes after or
// the wait runs out (then with the command unchanged).
export async function waitCommand(id: string, after: number, signal?: AbortSignal, wait = '30s'): Promise<Command> {
  const r = await request<{ command: Command }>('GET',
    `/api/v1/commands/${encodeURIComponent(id)}?wait=${wait}&after_version=${after}`, undefined, signal)
  return r.command
}

export async function cancelCommand(id: string): Promise<Command> {
  const r = await request<{ command: Command }>('POST', `/api/v1/commands/${encodeURIComponent(id)}/cancel`)
  return r.command
}

export async function bulk(id: string, signal?: AbortSignal): Promise<BulkStatus> {
  const r = await request<{ bulk: BulkStatus }>('GET', `/api/v1/bulk/${encodeURIComponent(id)}`, undefined, signal)
  return r.bulk
}
