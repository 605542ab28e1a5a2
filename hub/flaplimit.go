package hub

import (
	"sync"
	"time"
)

// FlapWindow is the span over which FlapLimit counts a device's connects.
const FlapWindow = time.Minute

// FlapLimit holds off devices that reconnect too often: past Max connects
// in FlapWindow, a device's further connects are refused for Hold. Each
// device is counted alone, so a flapping device does not slow the others.
//
// Only devices that connected in the last FlapWindow (or are held) are
// kept; the rest are swept once per window.
type FlapLimit struct {
	max  int
	hold time.Duration

	mu      sync.Mutex
	devs    map[string]*flapState
	sweptAt time.Time
}

type flapState struct {
	connects  []time.Time // admitted connects within the window, oldest first
	heldUntil time.Time
}

// NewFlapLimit allows max connects per device per FlapWindow and holds a
// device off for hold past that. It returns nil (no limit) when max <= 0.
func NewFlapLimit(max int, hold time.Duration) *FlapLimit {
	if max <= 0 {
		return nil
	}
	return &FlapLimit{max: max, hold: hold, devs: make(map[string]*flapState)}
}

// Connect records that device id connects at now. While the device is
// held off it returns ok false and how long the hold still lasts; held is
// true when this connect started the hold (it is the max+1-th in the
// window). Refused connects are not counted. A nil FlapLimit admits all.
func (f *FlapLimit) Connect(id string, now time.Time) (ok bool, wait time.Duration, held bool) {
	if f == nil {
		return true, 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweepLocked(now)
	st := f.devs[id]
	if st == nil {
		st = &flapState{}
		f.devs[id] = st
	}
	if now.Before(st.heldUntil) {
		return false, st.heldUntil.Sub(now), false
	}
	st.connects = recent(st.connects, now)
	if len(st.connects) >= f.max {
		st.heldUntil = now.Add(f.hold)
		st.connects = nil // the hold is the penalty; the count starts afresh after it
		return false, f.hold, true
	}
	st.connects = append(st.connects, now)
	return true, 0, false
}

// recent drops the connects that left the window ending at now.
func recent(ts []time.Time, now time.Time) []time.Time {
	cut := now.Add(-FlapWindow)
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return append(ts[:0], ts[i:]...)
}

// sweepLocked forgets, once per window, the devices neither held nor
// connected within it.
func (f *FlapLimit) sweepLocked(now time.Time) {
	if now.Sub(f.sweptAt) < FlapWindow {
		return
	}
	f.sweptAt = now
	cut := now.Add(-FlapWindow)
	for id, st := range f.devs {
		n := len(st.connects)
		if !now.Before(st.heldUntil) && (n == 0 || !st.connects[n-1].After(cut)) {
			delete(f.devs, id)
		}
	}
}
