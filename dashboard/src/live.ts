// LiveSocket keeps one WebSocket to /v1/live open: it reconnects with a
// jittered, capped exponential backoff, re-sends the current subscriptions
// after every reconnect, and reports its state for the "reconnecting" banner.

export type LiveState = 'connecting' | 'open' | 'reconnecting'

export interface FleetDevice { id: string; online: boolean; last_seen?: number; metrics?: Record<string, number> }
export interface LivePoint { name: string; t: number; v: unknown; tags?: Record<string, string> }
export type HubMessage =
  | { type: 'hello'; user: string; role: string }
  | { type: 'fleet'; devices: FleetDevice[] }
  | { type: 'points'; device: string; points: LivePoint[]; dropped?: number }
  | { type: 'device_state'; id: string; online: boolean }
  | { type: 'error'; error: string }
  | { type: 'pong' }

type Listener = (m: HubMessage) => void

const minDelay = 500
const maxDelay = 15000

export class LiveSocket {
  private ws: WebSocket | null = null
  private attempt = 0
  private timer = 0
  private stopped = false
  private subs = new Set<string>() // "fleet" or "device:<id>"
  private listeners = new Set<Listener>()
  state: LiveState = 'connecting'

  constructor(private onState: (s: LiveState) => void, private onClosed: () => void = () => {}) {}

  start(): void { this.stopped = false; this.connect() }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.ws?.close(1000)
    this.ws = null
  }

  listen(f: Listener): () => void { this.listeners.add(f); return () => this.listeners.delete(f) }

  subscribe(topic: 'fleet' | 'device', device?: string): void {
    const key = device ? `device:${device}` : topic
    if (this.subs.has(key)) return
    this.subs.add(key)
    this.send({ type: 'subscribe', topic, device })
  }

  unsubscribe(topic: 'fleet' | 'device', device?: string): void {
    const key = device ? `device:${device}` : topic
    if (!this.subs.delete(key)) return
    this.send({ type: 'unsubscribe', topic, device })
  }

  private send(m: { type: string; topic?: string; device?: string }): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m))
  }

  private setState(s: LiveState): void {
    if (this.state !== s) { this.state = s; this.onState(s) }
  }

  private connect(): void {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    const ws = new WebSocket(`${proto}//${location.host}/v1/live`)
    this.ws = ws
    ws.onopen = () => {
      this.attempt = 0
      this.setState('open')
      for (const key of this.subs) {
        const [topic, device] = key.startsWith('device:') ? ['device', key.slice(7)] : [key, undefined]
        this.send({ type: 'subscribe', topic, device })
      }
    }
    ws.onmessage = (ev) => {
      let m: HubMessage
      try { m = JSON.parse(ev.data) } catch { return }
      for (const f of this.listeners) f(m)
    }
    ws.onclose = () => {
      if (this.ws !== ws || this.stopped) return
      this.ws = null
      this.setState('reconnecting')
      this.onClosed()
      const delay = Math.min(maxDelay, minDelay * 2 ** this.attempt++)
      this.timer = window.setTimeout(() => this.connect(), delay / 2 + Math.random() * delay / 2)
    }
  }
}
