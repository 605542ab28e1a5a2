// Device page: one uPlot chart per key metric, filled at once from the
// hub's recent in-memory window (GET .../recent?since=10m) and extended by
// the live "device" topic. Longer ranges (InfluxDB) come in a later slice.
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
const windowMs = 10 * 60 * 1000
const maxPoints = 5000

// tagKey identifies one series of a metric; the untagged one is preferred
// (the whole machine rather than one core or one thermal zone).
function tagKey(tags?: Record<string, string>): string {
  return tags ? Object.keys(tags).sort().map((k) => `${k}=${tags[k]}`).join(',') : ''
}

interface Chart { name: string; tags: string | null; t: number[]; v: number[]; plot: uPlot; value: HTMLElement }

export function devicePage(root: HTMLElement, live: LiveSocket, id: string): () => void {
  const status = h('span', { class: 'badge' }, '…')
  const info = h('dl', { class: 'info' })
  const error = h('p', { class: 'error', hidden: true })
  const grid = h('div', { class: 'charts' })
  const consoleBox = h('section', { class: 'card console', id: 'console' })
  clear(root)
  root.append(
    h('div', { class: 'toolbar' }, h('a', { href: '#/', class: 'back' }, '‹ Fleet'), h('h1', {}, id), status),
    error, info, grid, consoleBox)
  const stopConsole = commandConsole(consoleBox, id)

  const list: Chart[] = charts.map((c) => makeChart(grid, c.name, c.title))
  const resize = () => { for (const c of list) c.plot.setSize(size(c.plot.root.parentElement!)) }
  window.addEventListener('resize', resize)

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
      h('dt', {}, 'Agent'), h('dd', {}, d.agent_version || '–'),
      h('dt', {}, 'Transport'), h('dd', {}, d.transport || '–'),
      h('dt', {}, 'Labels'), h('dd', {}, ...Object.entries(d.labels ?? {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`))),
    )
  }).catch((e: Error) => { error.textContent = `Could not load device: ${e.message}`; error.hidden = false })

  api.recent(id, '10m').then((series) => {
    for (const c of list) {
      const matching = series.filter((s) => s.name === c.name)
      const s = matching.find((x) => tagKey(x.tags) === '') ?? matching[0]
      if (!s) continue
      c.tags = tagKey(s.tags)
      const merged = new Map<number, number>()
      s.t.forEach((t, i) => merged.set(t, s.v[i]))
      c.t.forEach((t, i) => merged.set(t, c.v[i])) // live points that arrived first
      const ts = [...merged.keys()].sort((a, b) => a - b)
      c.t = ts; c.v = ts.map((t) => merged.get(t)!)
      redraw(c)
    }
  }).catch((e: Error) => { error.textContent = `Could not load recent data: ${e.message}`; error.hidden = false })

  function onLive(m: HubMessage): void {
    if (m.type === 'device_state' && m.id === id) setOnline(m.online)
    if (m.type !== 'points' || m.device !== id) return
    for (const c of list) {
      const pts = m.points.filter((p: LivePoint) => p.name === c.name && typeof p.v === 'number')
      if (!pts.length) continue
      if (c.tags === null) c.tags = pts.some((p) => tagKey(p.tags) === '') ? '' : tagKey(pts[0].tags)
      for (const p of pts) {
        if (tagKey(p.tags) !== c.tags) continue
        if (c.t.length && p.t <= c.t[c.t.length - 1]) continue
        c.t.push(p.t); c.v.push(p.v as number)
      }
      setOnline(true)
      redraw(c)
    }
  }

  function redraw(c: Chart): void {
    const cutoff = Date.now() - windowMs
    let drop = 0
    while (drop < c.t.length && c.t[drop] < cutoff) drop++
    drop = Math.max(drop, c.t.length - maxPoints)
    if (drop > 0) { c.t.splice(0, drop); c.v.splice(0, drop) }
    c.plot.setData([c.t.map((t) => t / 1000), c.v])
    c.value.textContent = formatMetric(c.name, c.v[c.v.length - 1])
  }

  const unlisten = live.listen(onLive)
  live.subscribe('device', id)
  return () => {
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
  return { name, tags: null, t: [], v: [], plot, value }
}
