package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// maxResponseBytes bounds what fleetctl reads from the hub.
const maxResponseBytes = 16 << 20

// Request time limits. A long poll may legitimately hang for its whole
// wait= before the hub answers, so it gets the wait plus the usual margin.
const (
	requestTimeout  = 30 * time.Second
	pollWait        = 30 * time.Second
	longPollTimeout = pollWait + requestTimeout
)

// client talks to the hub's REST API.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
	// long is http with room for a long poll's wait.
	long *http.Client
}

// apiError is an error response from the hub.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%d)", e.Message, e.Status) }

// client builds the API client from the global options.
func (a *app) client() (*client, error) {
	if a.opts.hub == "" {
		return nil, usageError{errors.New("no hub address: set --hub or FLEETCTL_HUB (e.g. https://hub.example:8443)")}
	}
	base, err := url.Parse(a.opts.hub)
	if err != nil || base.Host == "" {
		return nil, usageError{fmt.Errorf("--hub %q: want https://HOST[:PORT]", a.opts.hub)}
	}
	// The API token travels in every request: never over plain HTTP.
	if base.Scheme != "https" {
		return nil, usageError{fmt.Errorf("--hub %q: must be an https:// URL", a.opts.hub)}
	}
	token, err := a.apiToken()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := tlsConfig(a.opts.caFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &client{
		base: base, token: token,
		http: &http.Client{Transport: tr, Timeout: requestTimeout},
		long: &http.Client{Transport: tr, Timeout: longPollTimeout},
	}, nil
}

// tlsConfig trusts caFile's certificates when given, else the system roots.
// It never skips verification.
func tlsConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificates found", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// do sends a request with an optional JSON body and returns the response
// body of a 2xx answer; any other status becomes an *apiError.
func (c *client) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	return c.call(ctx, c.http, method, path, nil, body)
}

// get sends a GET with query parameters.
func (c *client) get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	return c.call(ctx, c.http, "GET", path, query, nil)
}

// poll sends a long-poll GET (query carries wait=pollWait or less).
func (c *client) poll(ctx context.Context, path string, query url.Values) ([]byte, error) {
	return c.call(ctx, c.long, "GET", path, query, nil)
}

func (c *client) call(ctx context.Context, hc *http.Client, method, path string, query url.Values, body any) ([]byte, error) {
	req, err := c.newRequest(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, explainTransportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, responseError(resp.StatusCode, data)
	}
	return data, nil
}

func (c *client) newRequest(ctx context.Context, method, path string, query url.Values, body any) (*http.Request, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// responseError turns a non-2xx answer into an *apiError, using the hub's
// {"error": ...} message when there is one.
func responseError(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := http.StatusText(status)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &apiError{Status: status, Message: msg}
}

// explainTransportError adds the likely fix to a certificate error.
func explainTransportError(err error) error {
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) || strings.Contains(err.Error(), "certificate signed by unknown authority") {
		return fmt.Errorf("%w\n(the hub's certificate is not trusted: pass its CA with --ca-file or FLEETCTL_CA_FILE; fleethub prints the path at start)", err)
	}
	return err
}
