// Package influx stores telemetry in InfluxDB (OSS 1.8 with Flux enabled, or
// 2.x) through influxdb-client-go's v2 write API. Sink implements
// hub.TelemetrySink with the hub's delivery guarantee: Write returns nil only
// once InfluxDB accepted every point or the point was dead-lettered as
// invalid; transient failures are retried until the context ends.
package influx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetwire/fleetwire/hub"
)

// Defaults for zero Config fields.
const (
	DefaultTimeout           = 10 * time.Second
	DefaultMinBackoff        = 200 * time.Millisecond
	DefaultMaxBackoff        = 10 * time.Second
	DefaultMaxPointsPerWrite = 5000
)

// precision is the timestamp precision of every write: protocol times are
// Unix milliseconds.
const precision = time.Millisecond

// Config configures a Sink.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8086.
	URL string
	// Token is the API token; on 1.8 "user:password", or "" when auth is off.
	Token string
	// Org is the organization (ignored by 1.8).
	Org string
	// Bucket is the bucket; on 1.8 "database/retention-policy" or
	// "database" for its default retention policy.
	Bucket string
	// Timeout bounds one HTTP write (default 10 s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the retry delay of transient failures:
	// capped exponential with full jitter (default 200 ms .. 10 s).
	MinBackoff, MaxBackoff time.Duration
	// MaxPointsPerWrite splits larger writes (default 5000).
	MaxPointsPerWrite int
	// Rand is the jitter source (default: randomly seeded). Tests set a
	// seeded one for repeatable delays.
	Rand *rand.Rand
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxPointsPerWrite == 0 {
		c.MaxPointsPerWrite = DefaultMaxPointsPerWrite
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return c
}

// Validate reports the first invalid field, named by its config key.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("influx.url: required")
	case !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://"):
		return fmt.Errorf("influx.url: %q is not an http(s) URL", c.URL)
	case c.Bucket == "":
		return errors.New("influx.bucket: required (on InfluxDB 1.8: database/retention-policy)")
	case c.Timeout < 0:
		return errors.New("influx.timeout: must not be negative")
	case c.MinBackoff < 0 || c.MaxBackoff < 0:
		return errors.New("influx.backoff: must not be negative")
	case c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("influx.backoff: min %s > max %s", c.MinBackoff, c.MaxBackoff)
	case c.MaxPointsPerWrite < 0:
		return errors.New("influx.max_points_per_write: must not be negative")
	}
	return nil
}

// The ingest pipeline writes through this interface.
var _ hub.TelemetrySink = (*Sink)(nil)

// Sink writes telemetry to InfluxDB. It is safe for concurrent use.
type Sink struct {
	cfg    Config
	client influxdb2.Client
	write  api.WriteAPIBlocking
	dead   hub.DeadLetterStore
	m      *metrics
	log    *slog.Logger

	randMu sync.Mutex // guards cfg.Rand, which is not safe for concurrent use

	encoders sync.Pool // of *encoder, one per concurrent Write
}

// New returns a Sink for cfg. Points InfluxDB refuses as invalid go to
// deadLetters. Metrics are registered on reg unless it is nil. New does not
// contact the server; Ping does.
func New(cfg Config, deadLetters hub.DeadLetterStore, reg prometheus.Registerer, log *slog.Logger) (*Sink, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if deadLetters == nil {
		return nil, errors.New("config: dead-letter store required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// The per-write context deadline is what bounds a write; the client's
	// own timeout is only a backstop for calls made without a deadline.
	backstop := uint(math.Ceil(cfg.Timeout.Seconds())) + 5
	opts := influxdb2.DefaultOptions().
		SetPrecision(precision).
		SetHTTPRequestTimeout(backstop)
	client := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	return &Sink{
		cfg:      cfg,
		client:   client,
		write:    client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		dead:     deadLetters,
		m:        m,
		log:      log.With("component", "influx", "bucket", cfg.Bucket),
		encoders: sync.Pool{New: func() any { return new(encoder) }},
	}, nil
}

// Close releases the HTTP client's idle connections.
func (s *Sink) Close() {
	s.client.Close()
}

// Ping checks that the server answers and that the bucket exists (on 1.8:
// that the database, and its retention policy if named, exist). It lists
// buckets with Flux, which both 1.8 and 2.x serve; on 2.x the token needs
// read access to buckets.
func (s *Sink) Ping(ctx context.Context) error {
	q := fmt.Sprintf(`import "strings"
buckets() |> filter(fn: (r) => r.name == %[1]s or strings.hasPrefix(v: r.name, prefix: %[2]s))`,
		fluxString(s.cfg.Bucket), fluxString(s.cfg.Bucket+"/"))
	res, err := s.client.QueryAPI(s.cfg.Org).Query(ctx, q)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	defer res.Close()
	found := false
	// The filter is the check: any row means the bucket exists. "db" also
	// matches "db/<rp>" because on 1.8 writing to "db" uses the database's
	// default retention policy.
	for res.Next() {
		found = true
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if !found {
		return fmt.Errorf("ping: bucket %q not found (on InfluxDB 1.8 create the database: CREATE DATABASE)", s.cfg.Bucket)
	}
	return nil
}

// fluxString quotes s as a Flux string literal.
func fluxString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// failure classifies a failed write.
type failure int

const (
	transient failure = iota // retry the same points later
	rejected                 // bad data: bisect down to the offending points
)

// classify decides how to handle a write error. Everything except "this data
// is invalid" (400, 422) and "this request is too big" (413) is transient:
// network errors, timeouts, 5xx and 429, and also 401, 403 and 404, which
// are configuration problems an operator can fix without losing data.
// Errors that are not HTTP errors come from encoding the points and are
// about the data too.
func classify(err error) (failure, *ihttp.Error) {
	var herr *ihttp.Error
	if !errors.As(err, &herr) {
		return rejected, nil
	}
	switch herr.StatusCode {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
		return rejected, herr
	}
	return transient, herr
}
