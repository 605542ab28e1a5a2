package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetwire/fleetwire/cmd/internal/logx"
	"github.com/fleetwire/fleetwire/dashboard"
	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/api"
	"github.com/fleetwire/fleetwire/hub/certs"
	"github.com/fleetwire/fleetwire/hub/dashws"
	"github.com/fleetwire/fleetwire/hub/devicews"
	"github.com/fleetwire/fleetwire/hub/influx"
	"github.com/fleetwire/fleetwire/hub/live"
	"github.com/fleetwire/fleetwire/hub/mqtt"
	"github.com/fleetwire/fleetwire/hub/store"
	"github.com/fleetwire/fleetwire/protocol"
)

// Server is a running hub: its parts in start order, stopped in reverse.
type Server struct {
	cfg    Config
	log    *slog.Logger
	stdout io.Writer

	store    *store.Store
	sink     *influx.Sink
	reg      *prometheus.Registry
	registry *hub.Registry
	ingester *hub.Ingester
	commands *hub.CommandService
	live     *live.Broker
	bridge   *mqtt.Bridge // nil unless mqtt.enabled
	liveWS   *dashws.Handler
	cmdStop  context.CancelFunc // stops the command service and the live broker
	cmdDone  chan struct{}
	devices  *devicews.Handler
	tls      *tls.Config
	certInfo *certs.Info
	http     *http.Server
	ln       net.Listener

	// Auth resolves API tokens and dashboard sessions; the live
	// WebSocket endpoint shares it with the REST API.
	Auth *api.Authenticator

	// AdminToken is set when this start created the first API token.
	AdminToken string
	// AdminPassword is set when this start created the first dashboard
	// user with a generated password.
	AdminPassword string
}

// NewServer opens the store, TLS material and InfluxDB client and wires the
// handlers. Nothing listens until Listen.
func NewServer(cfg Config, stdout, stderr io.Writer) (s *Server, err error) {
	log, err := logx.New(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	s = &Server{cfg: cfg, log: log, stdout: stdout, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			s.Close(context.Background())
		}
	}()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := s.openStore(); err != nil {
		return nil, err
	}
	if err := s.loadTLS(); err != nil {
		return nil, err
	}
	s.sink, err = influx.New(influx.Config{
		URL: cfg.Influx.URL, Token: cfg.Influx.Token, Org: cfg.Influx.Org, Bucket: cfg.Influx.Bucket,
		Timeout: cfg.Influx.Timeout, MaxPointsPerWrite: cfg.Ingest.MaxWritePoints,
	}, s.store, s.reg, log)
	if err != nil {
		return nil, fmt.Errorf("influx: %w", err)
	}
	if err := s.wire(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) openStore() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(s.cfg.DataDir, "fleethub.db"))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	s.store = st
	tok, created, err := st.EnsureAdminToken(ctx)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if created {
		s.AdminToken = tok
		path := filepath.Join(s.cfg.DataDir, "admin.token")
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("save admin token: %w", err)
		}
		fmt.Fprintf(s.stdout, "Created the admin API token (shown once; also saved to %s):\n  %s\n", path, tok)
	}
	return s.ensureAdminUser(ctx)
}

// ensureAdminUser creates the dashboard user "admin" on first start. A
// generated password is printed once and saved 0600 in data_dir; one from
// dashboard.admin_password is neither printed nor copied, since the
// operator has it already and every copy is one more to leak.
func (s *Server) ensureAdminUser(ctx context.Context) error {
	pw, generated := s.cfg.Dashboard.AdminPassword, false
	if pw == "" {
		pw, generated = generatePassword(), true
	}
	created, err := s.store.EnsureAdminUser(ctx, pw)
	if err != nil {
		return fmt.Errorf("admin user: %w", err)
	}
	switch {
	case !created:
		return nil
	case !generated:
		fmt.Fprintf(s.stdout, "Created dashboard user %s with the password from dashboard.admin_password.\n", store.AdminUserName)
		return nil
	}
	s.AdminPassword = pw
	path := filepath.Join(s.cfg.DataDir, "admin.password")
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("save admin password: %w", err)
	}
	fmt.Fprintf(s.stdout, "Created dashboard user %s (password shown once; also saved to %s):\n  %s\n", store.AdminUserName, path, pw)
	return nil
}

// generatePassword returns 128 random bits as 26 base32 characters: easy
// to type from a terminal, far beyond guessing.
func generatePassword() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (Go 1.24+)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func (s *Server) loadTLS() error {
	if s.cfg.TLS.Insecure {
		s.log.Warn("TLS is OFF (tls.insecure): devices and API traffic are in clear text; local development only")
		return nil
	}
	hosts := s.cfg.TLS.Hosts
	if u, err := url.Parse(s.cfg.PublicURL); err == nil && u.Hostname() != "" {
		// Devices dial public_url: the generated certificate must name it.
		hosts = append(hosts[:len(hosts):len(hosts)], u.Hostname())
	}
	cfg, info, err := certs.Load(s.cfg.DataDir, s.cfg.TLS.Cert, s.cfg.TLS.Key, hosts, s.log)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.tls, s.certInfo = cfg, info
	return nil
}

// wire builds the core and the HTTP routes.
func (s *Server) wire() error {
	cfg := s.cfg
	m := hub.NewMetrics(s.reg)
	s.registry = hub.NewRegistry(m)
	// Each device's budget, whatever its transport.
	rate := hub.RateLimit{
		MsgsPerSec: cfg.Device.MaxMsgsPerSec, MsgBurst: cfg.Device.MsgsBurst,
		PointsPerSec: cfg.Device.MaxPointsPerSec, PointsBurst: cfg.Device.PointsBurst,
		CloseAfter: cfg.Device.ThrottleCloseAfter,
	}
	// The ingester is built after the bridge (whose sink may wrap
	// InfluxDB's for northbound republishing) and reached through this.
	ingest := &lateIngester{}
	s.commands = hub.NewCommandService(s.store, s.registry, hub.NewCommandMetrics(s.reg), s.log)
	s.live = live.New(live.Config{Registerer: s.reg, FlushInterval: cfg.Dashboard.LiveFlush,
		MaxDeviceTopics: cfg.Dashboard.MaxDeviceTopics, MaxPendingPoints: cfg.Dashboard.MaxPendingPoints, SlowAfter: cfg.Dashboard.SlowAfter})
	s.registry.OnPresence(s.live.DeviceState)
	var sink hub.TelemetrySink = s.sink
	if cfg.MQTT.Enabled {
		bc, err := cfg.MQTT.bridgeConfig()
		if err != nil {
			return err
		}
		bc.Store, bc.Registry, bc.Ingester, bc.Commands, bc.Live = s.store, s.registry, ingest, s.commands, s.live
		bc.DeadLetters, bc.Registerer, bc.Logger = s.store, s.reg, s.log
		bc.Limits = protocol.Limits{MaxPoints: cfg.Device.MaxPoints}
		if cfg.MQTT.RateLimit {
			bc.Rate = rate // MQTT devices get the agents' budget
		}
		if s.bridge, err = mqtt.New(bc); err != nil {
			return err
		}
		sink = s.bridge.Sink(sink)
	}
	s.ingester = hub.NewIngester(hub.IngestConfig{
		QueuePoints: cfg.Ingest.QueuePoints, Workers: cfg.Ingest.Workers, MaxWritePoints: cfg.Ingest.MaxWritePoints,
	}, sink, m, s.log)
	ingest.Ingester = s.ingester
	s.devices = devicews.New(devicews.Config{
		Store: s.store, DeadLetters: s.store, Registry: s.registry, Ingester: s.ingester, Metrics: m, Logger: s.log,
		Commands: s.commands, Live: s.live,
		Limits:          protocol.Limits{MaxPoints: cfg.Device.MaxPoints},
		MaxMessageBytes: int(cfg.Device.MaxMessageBytes), MaxInflight: cfg.Device.MaxInflight,
		PingInterval: cfg.Device.PingInterval, HelloTimeout: cfg.Device.HelloTimeout,
		// At shutdown, devices are told to come back spread at the accept
		// rate (90 %: headroom for devices that were not connected).
		ReconnectRate:   0.9 * cfg.Device.AcceptRate,
		MaxConnsPerAddr: cfg.Device.MaxConnsPerAddr,
		Rate:            rate,
		FlapMax:         cfg.Device.FlapMax, FlapHold: cfg.Device.FlapHold,
	})
	mux := http.NewServeMux()
	accept := hub.NewAcceptLimit(hub.AcceptConfig{Rate: cfg.Device.AcceptRate, Burst: cfg.Device.AcceptBurst, Registerer: s.reg})
	mux.Handle("GET /v1/device", accept.Wrap(s.devices))
	s.Auth = api.NewAuthenticator(s.store, api.WithSessionLimits(cfg.Dashboard.SessionIdle, cfg.Dashboard.SessionMax))
	mux.Handle("/api/", api.New(api.Config{
		Store: s.store, Sessions: s.registry, Commands: s.commands, Logger: s.log,
		HubURL: s.deviceURL(), CAFingerprint: s.caFingerprint(), Auth: s.Auth,
	}))
	auth := func(r *http.Request) (string, hub.Role, error) {
		p, err := s.Auth.FromRequest(r)
		return p.Name, p.Role, err
	}
	var err error
	s.liveWS, err = dashws.New(dashws.Config{
		Broker: s.live, Authenticate: auth, PublicURL: s.publicURL(), AllowedOrigins: cfg.Dashboard.Origins, Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("dashboard.origins: %w", err)
	}
	mux.Handle("GET /v1/live", s.liveWS)
	mux.Handle("GET /api/v1/devices/{id}/recent", dashws.NewRecentHandler(s.live, auth))
	mux.Handle("GET /api/v1/devices/{id}/history", dashws.NewHistoryHandler(s.sink, auth))
	mux.Handle("/", dashboard.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	hw := hub.NewHeaderWatch(s.reg)
	srv := &http.Server{
		Handler:     hw.Wrap(mux),
		ConnContext: hw.ConnContext,
		ConnState:   hw.ConnState,
		// Also the TLS handshake's deadline (net/http uses it for both).
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		MaxHeaderBytes:    int(cfg.HTTP.MaxHeaderBytes),
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// Shutdown waits for open requests: end long polls at once.
	srv.RegisterOnShutdown(s.commands.Shutdown)
	s.http = srv
	return nil
}

// lateIngester lets the bridge be built before the ingester it submits to.
type lateIngester struct{ *hub.Ingester }

// publicURL is how browsers reach the hub: public_url, or this host.
func (s *Server) publicURL() string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	return strings.Replace(strings.TrimSuffix(s.deviceURL(), "/v1/device"), "ws", "http", 1)
}

// ready answers /readyz: the store is open and InfluxDB has our bucket.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var problems []string
	if err := s.store.Ping(ctx); err != nil {
		problems = append(problems, "store: "+err.Error())
	}
	if err := s.sink.Ping(ctx); err != nil {
		problems = append(problems, "influxdb: "+err.Error())
	}
	if len(problems) > 0 {
		http.Error(w, strings.Join(problems, "\n"), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}

// Listen opens the listening socket and starts the command service.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The per-address cap counts from accept, before the TLS handshake.
	ln = hub.NewConnLimit(s.cfg.HTTP.connsPerAddr(s.cfg.Device), s.reg).Listener(ln)
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.ln = ln
	ctx, cancel := context.WithCancel(context.Background())
	s.cmdStop, s.cmdDone = cancel, make(chan struct{})
	go func() {
		defer close(s.cmdDone)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); s.live.Run(ctx) }()
		s.commands.Run(ctx)
		wg.Wait()
	}()
	if s.bridge != nil {
		s.bridge.Start()
	}
	s.announce()
	return nil
}

// Addr is the bound listen address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL of the API, e.g. https://127.0.0.1:8443.
func (s *Server) URL() string {
	scheme := "https"
	if s.tls == nil {
		scheme = "http"
	}
	host, port, _ := net.SplitHostPort(s.Addr())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// CAFile is the generated CA certificate agents trust ("" with a configured cert).
func (s *Server) CAFile() string {
	if s.certInfo == nil {
		return ""
	}
	return s.certInfo.CAFile
}

func (s *Server) caFingerprint() string {
	if s.certInfo == nil {
		return ""
	}
	return s.certInfo.CAFingerprint
}

// deviceURL is the URL printed into agent configs.
func (s *Server) deviceURL() string {
	base := s.cfg.PublicURL
	if base == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(s.cfg.Listen)
		base = "https://" + net.JoinHostPort(host, port)
		if s.cfg.TLS.Insecure {
			base = "http://" + net.JoinHostPort(host, port)
		}
	}
	base = strings.Replace(strings.Replace(base, "https://", "wss://", 1), "http://", "ws://", 1)
	return strings.TrimRight(base, "/") + "/v1/device"
}

func (s *Server) announce() {
	s.log.Info("fleethub listening", "version", version, "url", s.URL(), "influx", s.cfg.Influx.URL, "bucket", s.cfg.Influx.Bucket)
	if s.certInfo != nil && s.certInfo.CAFile != "" {
		fmt.Fprintf(s.stdout, "Agents trust the hub's CA: ca_file %s, or pin ca_fingerprint %s\n", s.certInfo.CAFile, s.certInfo.CAFingerprint)
	}
	if dashboard.Built() {
		fmt.Fprintf(s.stdout, "Dashboard: %s/\n", strings.TrimSuffix(s.publicURL(), "/"))
	} else {
		s.log.Warn("dashboard assets not built into this binary (run `make dashboard` before building)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.sink.Ping(ctx); err != nil {
		s.log.Error("InfluxDB not ready; telemetry is held (not acked) until it is", "err", err)
	}
}

// Serve serves HTTP until Close.
func (s *Server) Serve() error {
	err := s.http.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close shuts down in order: stop accepting, close device sessions with
// "going away", write what is queued to InfluxDB (within ctx), then close
// the stores. Agents resend anything not acked.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	if s.http != nil {
		errs = append(errs, s.http.Shutdown(ctx))
	}
	if s.liveWS != nil {
		errs = append(errs, s.liveWS.Close(ctx))
	}
	if s.devices != nil {
		errs = append(errs, s.devices.Close(ctx))
	}
	if s.bridge != nil {
		// Before the ingester: messages in hand are stored and acked while
		// the connection is still up to carry the acks.
		errs = append(errs, s.bridge.Close(ctx))
	}
	if s.cmdStop != nil {
		s.cmdStop()
		<-s.cmdDone
	}
	if s.ingester != nil {
		errs = append(errs, s.ingester.Close(ctx))
	}
	if s.sink != nil {
		s.sink.Close()
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}
