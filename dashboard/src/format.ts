// Readable units and times. Times are shown in the browser's time zone.

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function bytes(n: number): string {
  let i = 0
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

export function percent(v: number | undefined): string {
  return v === undefined || !isFinite(v) ? '–' : `${v.toFixed(1)} %`
}

export function celsius(v: number | undefined): string {
  return v === undefined || !isFinite(v) ? '–' : `${v.toFixed(1)} °C`
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' })

// relative renders a Unix-ms time as "12 sec. ago", "3 hr. ago"…
export function relative(ms: number | undefined, now = Date.now()): string {
  if (!ms) return 'never'
  const s = Math.round((ms - now) / 1000)
  const a = Math.abs(s)
  if (a < 5) return 'just now'
  if (a < 60) return rtf.format(s, 'second')
  if (a < 3600) return rtf.format(Math.round(s / 60), 'minute')
  if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour')
  return rtf.format(Math.round(s / 86400), 'day')
}

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })

export function dateTime(ms: number | undefined): string {
  return ms ? dtf.format(new Date(ms)) : '–'
}

// formatMetric picks the unit from the metric's name.
export function formatMetric(name: string, v: number | undefined): string {
  if (v === undefined) return '–'
  if (name.endsWith('percent')) return percent(v)
  if (name.endsWith('celsius')) return celsius(v)
  if (name.endsWith('bytes')) return bytes(v)
  return Number.isInteger(v) ? String(v) : v.toFixed(2)
}
