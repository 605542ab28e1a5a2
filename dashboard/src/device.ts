// Device page: one uPlot chart per key metric. "Live (10 min)" fills at
// once from the hub's recent in-memory window (GET .../recent?since=10m) and
// extends with the live "device" topic; "1 h", "24 h" and "7 d" draw the
// stored history (GET .../history?metric=..&range=..), window means, with no
// live appends. The range lives in the hash: #/device/<id>?range=24h.
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import * as api from './api'
import { h, clear } from './dom'
import { LiveSocket, HubMessage, LivePoint } from './live'
import { formatMetric, dateTime, relative } from './format'
import { CPU, MEM, TEMP } from './overview'
import { commandConsole } from './commands'

const charts: { name: string; title: string }[] = [
  { name: CPU, title: 'CPU' }, { name: MEM, title: 'Memory' }, { name: TEMP, title: 'Temperature' },
]
const ranges: { id: string; label: string }[] = [
  { id: 'live', label: 'Live (10 min)' }, { id: '1h', label: '1 h' }, { id: '24h', label: '24 h' }, { id: '7d', label: '7 d' },
]
const windowMs = 10 * 60 * 1000
const maxPoints = 5000

// tagKey identifies one series of a metric; the untagged one is preferred
// (the whole machine rather than one core or one thermal zone).
function tagKey(tags?: Record<string, string>): string {
  return tags ? Object.keys(tags).sort().map((k) => `${k}=${tags[k]}`).join(',') : ''
}

// pick chooses the series of a chart's metric: untagged if there is one.
function pick(series: api.Series[], name: string): api.Series | undefined {
  const matching = series.filter((s) => s.name === name)
  return matching.find((x) => tagKey(x.tags) === '') ?? matching[0]
}

// every formats a window length: "30 s", "5 min", "1 h".
function every(sec: number): string {
  if (sec < 60) return `${sec} s`
  if (sec < 3600) return `${Math.round(sec / 60)} min`
  return `${Math.round(sec / 3600)} h`
}

interface Chart {
  name: string; tags: string | null; t: number[]; v: number[]; plot: uPlot; value: HTMLElement; empty: HTMLElement
  loaded: boolean // the range's first answer arrived (until then: "loading…", not "no data")
}

export function devicePage(root: HTMLElement, live: LiveSocket, id: string, initialRange = ''): () => void {
  const status = h('span', { class: 'badge' }, '…')
  const info = h('dl', { class: 'info' })
  const error = h('p', { class: 'error', hidden: true })
  const note = h('span', { class: 'range-note muted' })
  const buttons = ranges.map((r) => h('button', { type: 'button', class: 'ghost', 'data-range': r.id, onclick: () => select(r.id) }, r.label))
  const grid = h('div', { class: 'charts' })
  const consoleBox = h('section', { class: 'card console', id: 'console' })
  clear(root)
  root.append(
    h('div', { class: 'toolbar' }, h('a', { href: '#/', class: 'back' }, '‹ Fleet'), h('h1', {}, id), status),
    error, info,
    h('div', { class: 'ranges' }, h('div', { class: 'range-buttons', role: 'group', 'aria-label': 'Chart range' }, ...buttons), note),
    grid, consoleBox)
  const stopConsole = commandConsole(consoleBox, id)

  const list: Chart[] = charts.map((c) => makeChart(grid, c.name, c.title))
  const resize = () => { for (const c of list) c.plot.setSize(size(c.plot.root.parentElement!)) }
  window.addEventListener('resize', resize)

  let range = ranges.some((r) => r.id === initialRange) ? initialRange : 'live'
  let abort = new AbortController() // the current range's requests

  function setOnline(on: boolean): void {
    status.className = `badge ${on ? 'online' : 'offline'}`
    status.textContent = on ? 'online' : 'offline'
  }

  api.device(id).then((d) => {
    setOnline(d.online)
    const seen = d.last_seen ? Date.parse(d.last_seen) : undefined
    clear(info)
    info.append(
      h('dt', {}, 'Last seen'), h('dd', { title: dateTime(seen) }, relative(seen)),
      h('dt', {}, 'Agent'), h('dd', {}, (d.agent_version || '–') + (d.agent_behind ? ' (behind the newest in the fleet)' : '')),
      h('dt', {}, 'Transport'), h('dd', {}, d.transport || '–'),
      h('dt', {}, 'Labels'), h('dd', {}, ...Object.entries(d.labels ?? {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`))),
    )
  }).catch((e: Error) => { error.textContent = `Could not load device: ${e.message}`; error.hidden = false })

  // select switches the charts to range r and records it in the hash
  // (replaceState: no hashchange, so the page and its console stay).
  function select(r: string): void {
    if (r === range) return
    range = r
    const hash = `#/device/${encodeURIComponent(id)}${r === 'live' ? '' : `?range=${r}`}`
    history.replaceState(history.state, '', hash)
    load()
  }

  function load(): void {
    abort.abort()
    abort = new AbortController()
    const signal = abort.signal
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.range === range))
    error.hidden = true
    for (const c of list) { c.tags = null; c.t = []; c.v = []; c.loaded = false; redraw(c) }
    if (range === 'live') {
      note.textContent = 'last 10 min, live'
      api.recent(id, '10m').then((series) => {
        if (signal.aborted) return
        for (const c of list) {
          c.loaded = true
          const s = pick(series, c.name)
          if (s) {
            c.tags = tagKey(s.tags)
            const merged = new Map<number, number>()
            s.t.forEach((t, i) => merged.set(t, s.v[i]))
            c.t.forEach((t, i) => merged.set(t, c.v[i])) // live points that arrived first
            const ts = [...merged.keys()].sort((a, b) => a - b)
            c.t = ts; c.v = ts.map((t) => merged.get(t)!)
          }
          redraw(c)
        }
      }).catch((e: Error) => fail(signal, 'recent data', e))
      return
    }
    note.textContent = ''
    const r = range
    for (const c of list) {
      api.history(id, c.name, r, signal).then((hist) => {
        if (signal.aborted) return
        if (hist.everySeconds > 0) note.textContent = `mean per ${every(hist.everySeconds)}`
        const s = pick(hist.series, c.name)
        c.loaded = true
        if (s) { c.tags = tagKey(s.tags); c.t = s.t.slice(); c.v = s.v.slice() }
        redraw(c)
      }).catch((e: Error) => fail(signal, `${r} history`, e))
    }
  }

  function fail(signal: AbortSignal, what: string, e: Error): void {
    if (signal.aborted) return
    for (const c of list) { if (!c.loaded) { c.loaded = true; redraw(c) } }
    error.textContent = `Could not load ${what}: ${e.message}`
    error.hidden = false
  }

  function onLive(m: HubMessage): void {
    if (m.type === 'device_state' && m.id === id) setOnline(m.online)
    if (m.type !== 'points' || m.device !== id) return
    setOnline(true)
    if (range !== 'live') return // history ranges are window means: no live appends
    for (const c of list) {
      const pts = m.points.filter((p: LivePoint) => p.name === c.name && typeof p.v === 'number')
      if (!pts.length) continue
      if (c.tags === null) c.tags = pts.some((p) => tagKey(p.tags) === '') ? '' : tagKey(pts[0].tags)
      for (const p of pts) {
        if (tagKey(p.tags) !== c.tags) continue
        if (c.t.length && p.t <= c.t[c.t.length - 1]) continue
        c.t.push(p.t); c.v.push(p.v as number)
      }
      redraw(c)
    }
  }

  function redraw(c: Chart): void {
    if (range === 'live') {
      const cutoff = Date.now() - windowMs
      let drop = 0
      while (drop < c.t.length && c.t[drop] < cutoff) drop++
      drop = Math.max(drop, c.t.length - maxPoints)
      if (drop > 0) { c.t.splice(0, drop); c.v.splice(0, drop) }
    }
    const has = c.t.length > 0
    c.plot.root.hidden = !has
    c.empty.hidden = has
    c.empty.textContent = c.loaded ? 'no data in this range' : 'loading…'
    c.plot.setData([c.t.map((t) => t / 1000), c.v])
    c.value.textContent = formatMetric(c.name, c.v[c.v.length - 1])
  }

  const unlisten = live.listen(onLive)
  live.subscribe('device', id)
  load()
  return () => {
    abort.abort()
    unlisten()
    stopConsole()
    live.unsubscribe('device', id)
    window.removeEventListener('resize', resize)
    for (const c of list) c.plot.destroy()
  }
}

// size fits a chart to its card (the card's width minus its padding).
function size(box: HTMLElement): { width: number; height: number } {
  return { width: Math.max(200, (box.clientWidth || 400) - 24), height: 200 }
}

function makeChart(grid: HTMLElement, name: string, title: string): Chart {
  const value = h('span', { class: 'value' }, '–')
  const box = h('section', { class: 'chart', 'data-metric': name }, h('header', {}, h('h2', {}, title), value))
  grid.append(box)
  const css = getComputedStyle(document.documentElement)
  const stroke = css.getPropertyValue('--accent').trim() || '#3b82f6'
  const axis = { stroke: css.getPropertyValue('--muted').trim() || '#888', grid: { stroke: 'rgba(128,128,128,0.15)' } }
  const opts: uPlot.Options = {
    ...size(box),
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [axis, { ...axis, size: 60, values: (_u, vals) => vals.map((v) => formatMetric(name, v)) }],
    series: [{}, { label: title, stroke, width: 2, fill: stroke + '22', value: (_u, v) => formatMetric(name, v ?? undefined) }],
  }
  const plot = new uPlot(opts, [[], []], box)
  const empty = h('p', { class: 'chart-empty muted' }, 'loading…')
  box.append(empty)
  return { name, tags: null, t: [], v: [], plot, value, empty, loaded: false }
}
