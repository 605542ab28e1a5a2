// Fleet overview: every device with status, last seen, labels, agent
// version and key metrics, updated from the live "fleet" topic. Renders are
// coalesced to one per animation frame and paged, so a 10,000-device fleet
// streaming at 1 Hz costs one small table rebuild per frame at most.
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
  metrics: Record<string, number>
}

type SortKey = 'id' | 'status' | 'last_seen' | 'labels' | 'agent' | 'cpu' | 'mem' | 'temp'

const pageSize = 100

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

function labelText(l: Record<string, string>): string {
  return Object.keys(l).sort().map((k) => `${k}=${l[k]}`).join(' ')
}

export function overview(root: HTMLElement, live: LiveSocket): () => void {
  const rows = new Map<string, Row>()
  let filter = ''
  let sortKey: SortKey = 'id'
  let sortAsc = true
  let page = 0
  let frame = 0

  const counts = h('div', { class: 'counts' })
  const search = h('input', {
    type: 'search', placeholder: 'Filter by id, label (key=value) or version', 'aria-label': 'Filter devices',
    oninput: () => { filter = search.value.trim().toLowerCase(); page = 0; schedule() },
  })
  const thead = h('thead')
  const tbody = h('tbody')
  const pager = h('div', { class: 'pager' })
  const error = h('p', { class: 'error', hidden: true })
  clear(root)
  root.append(
    h('div', { class: 'toolbar' }, h('h1', {}, 'Fleet'), counts, search),
    error,
    h('div', { class: 'table-wrap' }, h('table', { class: 'devices' }, thead, tbody)),
    pager,
  )
  const bulkBox = h('section', { class: 'card bulk', id: 'bulk' })
  root.append(bulkBox)
  const stopBulk = bulkPanel(bulkBox)

  function schedule(): void {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; render() })
  }

  function visible(): Row[] {
    const all = [...rows.values()].filter((r) => !filter ||
      r.id.includes(filter) || labelText(r.labels).toLowerCase().includes(filter) || r.agent.includes(filter))
    all.sort((a, b) => {
      const x = sortValue(a, sortKey), y = sortValue(b, sortKey)
      const c = x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : 1
      return sortAsc ? c : -c
    })
    return all
  }

  function render(): void {
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
    for (const r of list.slice(page * pageSize, (page + 1) * pageSize)) tbody.append(rowEl(r, now))
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
      h('td', {}, r.agent || '–'),
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
      if (d.last_seen) r.lastSeen = d.last_seen
      if (d.metrics) Object.assign(r.metrics, d.metrics)
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
      if (!rows.has(d.id)) r.online = d.online
      const seen = d.last_seen ? Date.parse(d.last_seen) : undefined
      if (seen && (!r.lastSeen || seen > r.lastSeen)) r.lastSeen = seen
      rows.set(d.id, r)
    }
    render()
  }).catch((e: Error) => { error.textContent = `Could not load devices: ${e.message}`; error.hidden = false })
  render()

  return () => {
    unlisten()
    stopBulk()
    live.unsubscribe('fleet')
    clearInterval(tick)
    cancelAnimationFrame(frame)
  }
}
