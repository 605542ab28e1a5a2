// Command console (device page) and bulk command panel (overview), on the
// hub's command API: POST /api/v1/commands, long poll of
// GET /api/v1/commands/{id}?wait=&after_version=, history, cancel, and
// GET /api/v1/bulk/{id} polled for per-device progress.
import * as api from './api'
import { h, clear, append } from './dom'
import { dateTime, relative } from './format'

// parsePairs reads "k=v k2=v2" (spaces, commas or new lines between pairs).
// A bad pair is an error in words, not a silent drop.
export function parsePairs(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of text.split(/[\s,]+/)) {
    if (!part) continue
    const i = part.indexOf('=')
    if (i <= 0) throw new Error(`"${part}" is not key=value`)
    out[part.slice(0, i)] = part.slice(i + 1)
  }
  return out
}

function pairsText(m?: Record<string, string> | null): string {
  return Object.keys(m ?? {}).sort().map((k) => `${k}=${m![k]}`).join(' ')
}

const stateWords: Record<string, string> = {
  queued: 'queued', sent: 'sent', received: 'running', succeeded: 'succeeded', failed: 'failed',
  timed_out: 'timed out', rejected: 'rejected', expired: 'expired', canceled: 'canceled',
}

export function stateBadge(state: string): HTMLElement {
  return h('span', { class: `badge state-${state}`, 'data-state': state }, stateWords[state] ?? state)
}

function duration(ms?: number): string {
  if (ms === undefined || ms === null) return '–'
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`
}

function roleNote(what: string): HTMLElement {
  const u = api.user()
  return h('p', { class: 'note', 'data-role-note': '' },
    `Signed in as ${u?.role ?? 'viewer'}: you can watch ${what} but not send them. Operators and admins can.`)
}

// field gives an input a visible caption (placeholders vanish once typed in).
function field(caption: string, input: HTMLInputElement, wide = false): HTMLLabelElement {
  return h('label', { class: wide ? 'field wide' : 'field' }, h('span', {}, caption), input)
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

// commandConsole renders the device page's console card into box and
// returns its teardown (which ends any long poll in flight).
export function commandConsole(box: HTMLElement, deviceID: string): () => void {
  const ctl = new AbortController()
  const canSend = api.canCommand()
  const name = h('input', { name: 'command', placeholder: 'e.g. ping', 'aria-label': 'Command name', required: true, autocomplete: 'off' })
  const args = h('input', { name: 'args', placeholder: 'key=value key2=value2 (optional)', 'aria-label': 'Arguments', autocomplete: 'off' })
  const send = h('button', { type: 'submit', class: 'primary', id: 'cmd-send' }, 'Send')
  const formError = h('p', { class: 'error', role: 'alert', hidden: true })
  const current = h('div', { class: 'cmd-current', 'aria-live': 'polite' },
    h('p', { class: 'muted' }, canSend ? 'No command selected. Send one, or pick one from the history.' : 'Pick a command from the history to see its output.'))
  const history = h('tbody')
  const historyError = h('p', { class: 'error', hidden: true })

  const form = h('form', { class: 'cmd-form', onsubmit: async (e: Event) => {
    e.preventDefault()
    formError.hidden = true
    let a: Record<string, string>
    try { a = parsePairs(args.value) } catch (err) { return showFormError(`Arguments: ${errMessage(err)}`) }
    const n = name.value.trim()
    if (!n) return showFormError('Enter a command name.')
    send.disabled = true
    try {
      const c = await api.sendCommand(deviceID, { name: n, args: Object.keys(a).length ? a : undefined })
      watch(c)
      loadHistory()
    } catch (err) {
      showFormError(`Not sent: ${errMessage(err)}`)
    } finally {
      send.disabled = false
    }
  } }, field('Command', name), field('Arguments', args, true), send)

  function showFormError(msg: string): void { formError.textContent = msg; formError.hidden = false }

  clear(box)
  box.append(
    h('header', {}, h('h2', {}, 'Commands'), h('span', { class: 'muted' }, 'the device\'s allowlist decides what runs')),
    canSend ? form : roleNote('commands'), formError,
    current,
    h('h3', {}, 'Recent commands'), historyError,
    h('div', { class: 'table-wrap' }, h('table', { class: 'commands' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Sent'), h('th', {}, 'Command'), h('th', {}, 'State'),
        h('th', {}, 'Exit'), h('th', {}, 'By'), h('th', {}, ''))),
      history)))

  // watch shows c and follows it with long polls until it is final. A newer
  // watch supersedes an older one.
  let watching = 0
  async function watch(c: api.Command): Promise<void> {
    const token = ++watching
    renderCurrent(c)
    let failures = 0
    while (!api.isFinal(c.state) && token === watching && !ctl.signal.aborted) {
      try {
        const next = await api.waitCommand(c.id, c.version, ctl.signal)
        failures = 0
        if (token !== watching) return
        if (next.version !== c.version) { c = next; renderCurrent(c); updateHistoryRow(c) }
      } catch (err) {
        if (ctl.signal.aborted) return
        if (++failures >= 5) { renderCurrent(c, `Lost track of the command: ${errMessage(err)}`); return }
        await new Promise((r) => setTimeout(r, 1000 * failures))
      }
    }
  }

  function renderCurrent(c: api.Command, problem = ''): void {
    clear(current)
    const final = api.isFinal(c.state)
    current.dataset.command = c.id
    current.dataset.state = c.state
    append(current, [
      h('div', { class: 'cmd-head' },
        h('strong', { class: 'cmd-name' }, c.name), h('span', { class: 'muted' }, pairsText(c.args)),
        stateBadge(c.state),
        final ? null : h('span', { class: 'spinner', 'aria-label': 'waiting for the device' }),
        h('span', { class: 'spacer' }),
        c.exit_code !== undefined && c.exit_code !== null ? h('span', { class: 'cmd-exit' }, `exit ${c.exit_code}`) : null,
        h('span', { class: 'cmd-duration' }, final ? duration(c.duration_ms) : ''),
        c.state === 'queued' && canSend ? cancelButton(c) : null),
      c.error ? h('p', { class: 'error cmd-error' }, c.error) : null,
      problem ? h('p', { class: 'error' }, problem) : null,
      output('stdout', c.stdout), output('stderr', c.stderr),
      c.truncated ? h('p', { class: 'truncated' }, 'Output truncated: the device sent more than the hub keeps.') : null,
      !final && !c.stdout && !c.stderr ? h('p', { class: 'muted' }, c.state === 'queued' ? 'Waiting for the device to pick it up…' : 'Running…') : null,
      final && !c.stdout && !c.stderr && !c.error ? h('p', { class: 'muted' }, 'No output.') : null,
    ])
  }

  function output(kind: string, text?: string): HTMLElement | null {
    if (!text) return null
    return h('div', { class: `output ${kind}` }, h('span', { class: 'output-label' }, kind), h('pre', { 'data-stream': kind }, text))
  }

  function cancelButton(c: api.Command): HTMLButtonElement {
    const b = h('button', { type: 'button', class: 'cancel', 'data-cancel': c.id, onclick: async () => {
      b.disabled = true
      try {
        const n = await api.cancelCommand(c.id)
        updateHistoryRow(n)
        if (current.dataset.command === n.id) renderCurrent(n)
      } catch (err) {
        historyError.textContent = `Cancel failed: ${errMessage(err)}`; historyError.hidden = false
        b.disabled = false
      }
    } }, 'Cancel')
    return b
  }

  function historyRow(c: api.Command): HTMLTableRowElement {
    const t = Date.parse(c.created_at)
    return h('tr', { 'data-command': c.id },
      h('td', { title: dateTime(t) }, relative(t)),
      h('td', {}, h('button', { type: 'button', class: 'link', title: 'Show output', onclick: () => { watch(c) } }, c.name),
        ' ', h('span', { class: 'muted' }, pairsText(c.args))),
      h('td', {}, stateBadge(c.state)),
      h('td', { class: 'num' }, c.exit_code ?? '–'),
      h('td', {}, c.sent_by || '–'),
      h('td', {}, c.state === 'queued' && canSend ? cancelButton(c) : null))
  }

  function updateHistoryRow(c: api.Command): void {
    for (const tr of history.querySelectorAll('tr[data-command]')) {
      if ((tr as HTMLElement).dataset.command === c.id) tr.replaceWith(historyRow(c))
    }
  }

  async function loadHistory(): Promise<void> {
    try {
      const list = await api.commands(deviceID, 20)
      if (ctl.signal.aborted) return
      historyError.hidden = true
      clear(history)
      for (const c of list) history.append(historyRow(c))
      if (!list.length) history.append(h('tr', {}, h('td', { colspan: '6', class: 'empty' }, 'No commands sent to this device yet.')))
    } catch (err) {
      historyError.textContent = `Could not load commands: ${errMessage(err)}`; historyError.hidden = false
    }
  }

  loadHistory()
  const refresh = window.setInterval(loadHistory, 10000) // states move on without us
  return () => { ctl.abort(); clearInterval(refresh); watching++ }
}

// bulkPanel renders the overview's bulk command panel into box.
export function bulkPanel(box: HTMLElement): () => void {
  let timer = 0
  let stopped = false
  const canSend = api.canCommand()
  const selector = h('input', { name: 'selector', placeholder: 'site=lab', 'aria-label': 'Label selector', required: true, autocomplete: 'off' })
  const name = h('input', { name: 'command', placeholder: 'e.g. ping', 'aria-label': 'Command name', required: true, autocomplete: 'off' })
  const args = h('input', { name: 'args', placeholder: 'key=value (optional)', 'aria-label': 'Arguments', autocomplete: 'off' })
  const send = h('button', { type: 'submit', class: 'primary', id: 'bulk-send' }, 'Send to matching devices')
  const formError = h('p', { class: 'error', role: 'alert', hidden: true })
  const progress = h('div', { class: 'bulk-progress', 'aria-live': 'polite' })

  const form = h('form', { class: 'cmd-form', onsubmit: async (e: Event) => {
    e.preventDefault()
    formError.hidden = true
    let sel: Record<string, string>, a: Record<string, string>
    try { sel = parsePairs(selector.value) } catch (err) { return fail(`Selector: ${errMessage(err)}`) }
    try { a = parsePairs(args.value) } catch (err) { return fail(`Arguments: ${errMessage(err)}`) }
    if (!Object.keys(sel).length) return fail('Give at least one label (key=value): a whole-fleet command is not one click away.')
    if (!name.value.trim()) return fail('Enter a command name.')
    send.disabled = true
    try {
      const st = await api.sendBulk(sel, { name: name.value.trim(), args: Object.keys(a).length ? a : undefined })
      follow(st)
    } catch (err) {
      fail(`Not sent: ${errMessage(err)}`)
    } finally {
      send.disabled = false
    }
  } }, field('Label selector', selector), field('Command', name), field('Arguments', args, true), send)

  function fail(msg: string): void { formError.textContent = msg; formError.hidden = false }

  clear(box)
  box.append(h('header', {}, h('h2', {}, 'Bulk command'), h('span', { class: 'muted' }, 'send one command to every device whose labels match')),
    canSend ? form : roleNote('bulk commands'), formError, progress)

  // follow renders st and polls every 500 ms until every command is final.
  function follow(st: api.BulkStatus): void {
    clearTimeout(timer)
    render(st)
    if (st.done || stopped) return
    timer = window.setTimeout(async () => {
      try { follow(await api.bulk(st.bulk_id)) } catch (err) {
        fail(`Lost track of bulk ${st.bulk_id}: ${errMessage(err)}`)
        if (!stopped) timer = window.setTimeout(() => follow(st), 2000)
      }
    }, 500)
  }

  function render(st: api.BulkStatus): void {
    const list = st.commands ?? []
    const finished = list.filter((c) => api.isFinal(c.state)).length
    clear(progress)
    progress.dataset.bulk = st.bulk_id
    progress.dataset.done = String(st.done)
    if (st.total === 0) {
      progress.append(h('p', { class: 'muted' }, 'No device matches that selector; nothing was sent.'))
      return
    }
    progress.append(
      h('div', { class: 'cmd-head' },
        h('strong', { class: 'bulk-count' }, `${finished}/${st.total} done`),
        st.done ? null : h('span', { class: 'spinner', 'aria-label': 'in progress' }),
        ...Object.keys(st.by_state ?? {}).sort().map((s) => h('span', { class: 'by-state' }, stateBadge(s), ` ${st.by_state[s]}`))),
      h('div', { class: 'table-wrap' }, h('table', { class: 'commands' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Device'), h('th', {}, 'State'), h('th', {}, 'Exit'), h('th', {}, 'Duration'), h('th', {}, 'Output'))),
        h('tbody', {}, ...list.map((c) => h('tr', { 'data-device': c.device_id },
          h('td', {}, h('a', { href: `#/device/${encodeURIComponent(c.device_id)}` }, c.device_id)),
          h('td', {}, stateBadge(c.state)),
          h('td', { class: 'num' }, c.exit_code ?? '–'),
          h('td', { class: 'num' }, api.isFinal(c.state) ? duration(c.duration_ms) : '–'),
          h('td', { class: 'snippet' }, firstLine(c))))))))
  }

  return () => { stopped = true; clearTimeout(timer) }
}

function firstLine(c: api.Command): string {
  const s = (c.error || c.stdout || c.stderr || '').trim()
  const line = s.split('\n')[0]
  return line.length > 80 ? line.slice(0, 79) + '…' : line
}
