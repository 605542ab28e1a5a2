package hub

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// HeaderWatch counts HTTP connections that end before any request
// reached a handler: cut off by the read-header timeout (a slow-header
// attack, a stalled TLS handshake), refused for an oversized header
// (431), or garbage. net/http ends these itself, unseen by handlers;
// wire ConnContext, ConnState and Wrap into the http.Server.
type HeaderWatch struct {
	count prometheus.Counter
	conns sync.Map // net.Conn -> *atomic.Bool (a request reached a handler)
}

type servedKey struct{}

// NewHeaderWatch registers fleethub_http_conns_unserved_total on reg
// (nil: not registered).
func NewHeaderWatch(reg prometheus.Registerer) *HeaderWatch {
	w := &HeaderWatch{count: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fleethub_http_conns_unserved_total",
		Help: "Connections closed before a complete request header reached the hub (header timeout, oversized header, failed TLS handshake, garbage).",
	})}
	if reg != nil {
		reg.MustRegister(w.count)
	}
	return w
}

// ConnContext is http.Server.ConnContext.
func (w *HeaderWatch) ConnContext(ctx context.Context, c net.Conn) context.Context {
	served := new(atomic.Bool)
	w.conns.Store(c, served)
	return context.WithValue(ctx, servedKey{}, served)
}

// ConnState is http.Server.ConnState.
func (w *HeaderWatch) ConnState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateHijacked:
		w.conns.Delete(c) // upgraded: a request was served
	case http.StateClosed:
		if v, ok := w.conns.LoadAndDelete(c); ok && !v.(*atomic.Bool).Load() {
			w.count.Inc()
		}
	}
}

// Wrap marks the connection of every request that reaches next.
func (w *HeaderWatch) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if served, ok := r.Context().Value(servedKey{}).(*atomic.Bool); ok {
			served.Store(true)
		}
		next.ServeHTTP(rw, r)
	})
}
