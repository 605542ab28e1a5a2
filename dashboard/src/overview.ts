// Fleet overview: every device with status, last seen, labels, agent
// version and key metrics, updated from the live "fleet" topic. Live
// renders are coalesced to one per animation frame and at most one every
// minGap ms (the hub sends fleet updates up to every 15 ms; a table is read
// by people, not at 60 fps), and paged, so a 10,000-device fleet streaming
// at 1 Hz costs one small table rebuild ten times a second at most.
// Each row's CPU, memory and temperature carry a uPlot sparkline of the
// last sparkLen fleet values; only rows on the current page get one, drawn
// by a pool of uPlot instances that is reused across renders and shrunk
// (destroyed) when the page holds fewer rows. A label select (key=value
// pairs present in the fleet) combines with the text filter.
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import * as api from './api'
import { h, clear } from './dom'
import { LiveSocket, HubMessage } from './live'
import { percent, celsius, relative, dateTime } from './format'
import { bulkPanel } from './commands'

export const CPU = 'cpu.usage_percent'
export const MEM = 'mem.used_percent'
export const TEMP = 'temp.celsius'

interface Row {
  id: string
  online: boolean
  lastSeen?: number
  labels: Record<string, string>
  agent: string
  behind?: boolean // agent older than the newest in the fleet
  metrics: Record<string, number>
}

type SortKey = 'id' | 'status' | 'last_seen' | 'labels' | 'agent' | 'cpu' | 'mem' | 'temp'

const pageSize = 100
const minGap = 100 // ms between live re-renders of the table
export const sparkLen = 60 // values kept per device and metric
const sparkMetrics: [string, string][] = [[CPU, 'cpu'], [MEM, 'mem'], [TEMP, 'temp']]

// indexes[n] = [0, 1, …, n-1]: the x values of an n-point sparkline.
const indexes: number[][] = []
function xs(n: number): number[] {
  return indexes[n] ??= Array.from({ length: n }, (_, i) => i)
}

function sparkline(): uPlot {
  const stroke = getComputedStyle(document.documentElement).getPropertyValue('--accent').trim() || '#3b82f6'
  return new uPlot({
    width: 64, height: 18, class: 'spark',
    legend: { show: false }, cursor: { show: false }, select: { show: false, left: 0, top: 0, width: 0, height: 0 },
    axes: [{ show: false }, { show: false }],
    scales: { x: { time: false } },
    series: [{}, { stroke, width: 1, points: { show: false } }],
  }, [[], []])
}

const columns: [SortKey, string][] = [
  ['id', 'Device'], ['status', 'Status'], ['last_seen', 'Last seen'], ['labels', 'Labels'],
  ['agent', 'Agent'], ['cpu', 'CPU'], ['mem', 'Memory'], ['temp', 'Temp'],
]

function sortValue(r: Row, k: SortKey): string | number {
  switch (k) {
    case 'id': return r.id
    case 'status': return r.online ? 1 : 0
    case 'last_seen': return r.lastSeen ?? 0
    case 'labels': return labelText(r.labels)
    case 'agent': return r.agent
    case 'cpu': return r.metrics[CPU] ?? -Infinity
    case 'mem': return r.metrics[MEM] ?? -Infinity
    case 'temp': return r.metrics[TEMP] ?? -Infinity
  }
}

// Render latency probe for benchmarks: when a page defines
// window.__fleetwireRenderLatency as an array (the benchmark injects it
// before the app loads; the app never does), every row drawn with a newer
// last-seen time from the live socket adds (time of the next frame -
// device timestamp) in ms, i.e. device clock to pixels on screen. Rows not
// on the page when drawn lose their sample. Bounded to the last 100,000.
declare global { interface Window { __fleetwireRenderLatency?: number[] } }

function labelText(l: Record<string, string>): string {
  return Object.keys(l).sort().map((k) => `${k}=${l[k]}`).join(' ')
}

export function overview(root: HTMLElement, live: LiveSocket): () => void {
  const rows = new Map<string, Row>()
  const history = new Map<string, Record<string, number[]>>() // id -> metric -> last sparkLen values
  const pool: uPlot[] = [] // sparklines of the current page, reused across renders
  let filter = ''
  let labelFilter = '' // "key=value" or '' for all
  let labelOptions = ''
  let sortKey: SortKey = 'id'
  let sortAsc = true
  let page = 0
  let frame = 0
  let timer = 0
  let lastRender = 0
  const pending = new Map<string, number>() // id -> newer last-seen from the live socket, not drawn yet (latency probe only)

  const counts = h('div', { class: 'counts' })
  const search = h('input', {
    type: 'search', placeholder: 'Filter by id, label (key=value) or version', 'aria-label': 'Filter devices',
    oninput: () => { filter = search.value.trim().toLowerCase(); page = 0; schedule() },
  })
  const labelSelect = h('select', { class: 'label-filter', 'aria-label': 'Filter by label',
    onchange: () => { labelFilter = labelSelect.value; page = 0; schedule() } })
  const thead = h('thead')
  const tbody = h('tbody')
  const pager = h('div', { class: 'pager' })
  const error = h('p', { class: 'error', hidden: true })
  clear(root)
  root.append(
    h('div', { class: 'toolbar' }, h('h1', {}, 'Fleet'), counts, labelSelect, search),
    error,
    h('div', { class: 'table-wrap' }, h('table', { class: 'devices' }, thead, tbody)),
    pager,
  )
  const bulkBox = h('section', { class: 'card bulk', id: 'bulk' })
  root.append(bulkBox)
  const stopBulk = bulkPanel(bulkBox)

  // schedule renders on the next frame at least minGap after the last one.
  function schedule(): void {
    if (frame || timer) return
    const wait = lastRender + minGap - performance.now()
    const draw = () => { frame = requestAnimationFrame(() => { frame = 0; render() }) }
    if (wait > 0) timer = window.setTimeout(() => { timer = 0; draw() }, wait)
    else draw()
  }

  function visible(): Row[] {
    const eq = labelFilter.indexOf('=')
    const lk = labelFilter.slice(0, eq), lv = labelFilter.slice(eq + 1)
    const all = [...rows.values()].filter((r) => (!labelFilter || r.labels[lk] === lv) && (!filter ||
      r.id.includes(filter) || labelText(r.labels).toLowerCase().includes(filter) || r.agent.includes(filter)))
    all.sort((a, b) => {
      const x = sortValue(a, sortKey), y = sortValue(b, sortKey)
      const c = x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : 1
      return sortAsc ? c : -c
    })
    return all
  }

  // renderLabels rebuilds the label select when the fleet's label pairs change.
  function renderLabels(): void {
    const pairs = new Set<string>()
    for (const r of rows.values()) for (const k in r.labels) pairs.add(`${k}=${r.labels[k]}`)
    const sorted = [...pairs].sort()
    const key = sorted.join('\n')
    if (key === labelOptions) return
    labelOptions = key
    if (labelFilter && !pairs.has(labelFilter)) labelFilter = ''
    clear(labelSelect)
    labelSelect.append(h('option', { value: '' }, 'All labels'), ...sorted.map((p) => h('option', { value: p }, p)))
    labelSelect.value = labelFilter
  }

  function render(): void {
    lastRender = performance.now()
    let on = 0
    for (const r of rows.values()) if (r.online) on++
    clear(counts)
    counts.append(h('span', { class: 'badge online' }, `${on} online`), ' ',
      h('span', { class: 'badge offline' }, `${rows.size - on} offline`))
    clear(thead)
    thead.append(h('tr', {}, ...columns.map(([k, label]) => h('th', {
      class: k === sortKey ? (sortAsc ? 'sorted asc' : 'sorted desc') : '',
      'aria-sort': k === sortKey ? (sortAsc ? 'ascending' : 'descending') : 'none',
    }, h('button', { type: 'button', 'data-sort': k, onclick: () => {
      if (sortKey === k) sortAsc = !sortAsc; else { sortKey = k; sortAsc = true }
      render()
    } }, label)))))
    const list = visible()
    const pages = Math.max(1, Math.ceil(list.length / pageSize))
    page = Math.min(page, pages - 1)
    const now = Date.now()
    clear(tbody)
    let used = 0
    const probe = window.__fleetwireRenderLatency
    const drawn: number[] = []
    for (const r of list.slice(page * pageSize, (page + 1) * pageSize)) {
      const t = pending.get(r.id)
      if (t !== undefined) drawn.push(t)
      const tr = rowEl(r, now)
      const hist = history.get(r.id)
      if (hist) for (const [name, col] of sparkMetrics) {
        const v = hist[name]
        if (!v || v.length < 2) continue // one value is no line
        const plot = pool[used] ?? (pool[used] = sparkline())
        used++
        plot.setData([xs(v.length), v])
        tr.querySelector(`td[data-metric=${col}]`)!.append(plot.root)
      }
      tbody.append(tr)
    }
    while (pool.length > used) pool.pop()!.destroy()
    pending.clear()
    // The next frame starts after this one is painted.
    if (probe && drawn.length) requestAnimationFrame(() => {
      const t = Date.now()
      for (const s of drawn) probe.push(t - s)
      if (probe.length > 100000) probe.splice(0, probe.length - 100000)
    })
    if (list.length === 0) tbody.append(h('tr', {}, h('td', { colspan: String(columns.length), class: 'empty' },
      rows.size ? 'No device matches the filter.' : 'No devices yet.')))
    clear(pager)
    if (pages > 1) pager.append(
      h('button', { type: 'button', disabled: page === 0, onclick: () => { page--; render() } }, '‹ Prev'),
      ` Page ${page + 1} of ${pages} (${list.length} devices) `,
      h('button', { type: 'button', disabled: page >= pages - 1, onclick: () => { page++; render() } }, 'Next ›'))
  }

  function rowEl(r: Row, now: number): HTMLTableRowElement {
    return h('tr', { 'data-device': r.id },
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(r.id)}` }, r.id)),
      h('td', {}, h('span', { class: `badge ${r.online ? 'online' : 'offline'}` }, r.online ? 'online' : 'offline')),
      h('td', { title: dateTime(r.lastSeen) }, relative(r.lastSeen, now)),
      h('td', {}, ...Object.keys(r.labels).sort().map((k) => h('span', { class: 'label' }, `${k}=${r.labels[k]}`))),
      h('td', r.behind ? { 'data-col': 'agent', class: 'behind', title: 'older than the newest agent version in the fleet' } : { 'data-col': 'agent' },
        (r.agent || '–') + (r.behind ? ' (behind)' : '')),
      h('td', { class: 'num', 'data-metric': 'cpu' }, percent(r.metrics[CPU])),
      h('td', { class: 'num', 'data-metric': 'mem' }, percent(r.metrics[MEM])),
      h('td', { class: 'num', 'data-metric': 'temp' }, celsius(r.metrics[TEMP])),
    )
  }

  function onLive(m: HubMessage): void {
    if (m.type !== 'fleet') return
    for (const d of m.devices ?? []) {
      let r = rows.get(d.id)
      if (!r) { r = { id: d.id, online: d.online, labels: {}, agent: '', metrics: {} }; rows.set(d.id, r) }
      r.online = d.online
      if (d.last_seen && window.__fleetwireRenderLatency && d.last_seen > (r.lastSeen ?? 0)) pending.set(d.id, d.last_seen)
      if (d.last_seen) r.lastSeen = d.last_seen
      if (d.metrics) {
        Object.assign(r.metrics, d.metrics)
        let hist = history.get(d.id)
        if (!hist) history.set(d.id, hist = {})
        for (const [name] of sparkMetrics) {
          const v = d.metrics[name]
          if (typeof v !== 'number' || !isFinite(v)) continue
          const arr = hist[name] ??= []
          arr.push(v)
          if (arr.length > sparkLen) arr.splice(0, arr.length - sparkLen)
        }
      }
    }
    schedule()
  }

  const unlisten = live.listen(onLive)
  live.subscribe('fleet')
  const tick = window.setInterval(schedule, 5000) // keep "last seen" fresh

  api.devices().then((list) => {
    for (const d of list) {
      const r = rows.get(d.id) ?? { id: d.id, online: d.online, labels: {}, agent: '', metrics: {} }
      r.labels = d.labels ?? {}
      r.agent = d.agent_version ?? ''
      r.behind = d.agent_behind ?? false
      if (!rows.has(d.id)) r.online = d.online
      const seen = d.last_seen ? Date.parse(d.last_seen) : undefined
      if (seen && (!r.lastSeen || seen > r.lastSeen)) r.lastSeen = seen
      rows.set(d.id, r)
    }
    renderLabels()
    render()
  }).catch((e: Error) => { error.textContent = `Could not load devices: ${e.message}`; error.hidden = false })
  renderLabels()
  render()

  return () => {
    unlisten()
    stopBulk()
    live.unsubscribe('fleet')
    clearInterval(tick)
    cancelAnimationFrame(frame)
    clearTimeout(timer)
    for (const p of pool.splice(0)) p.destroy()
  }
}
