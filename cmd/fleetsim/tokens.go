package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/fleetwire/fleetwire/agent/trust"
)

// readTokens reads a tokens file: one "id token" per line; blank lines
// and lines starting with # are skipped. A missing file is an empty map
// when missingOK.
func readTokens(path string, missingOK bool) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && missingOK {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--tokens: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 2 {
			return nil, fmt.Errorf("--tokens: %s line %d: want \"id token\"", path, n)
		}
		out[fs[0]] = fs[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--tokens: %s: %w", path, err)
	}
	return out, nil
}

// fleetTokens returns the token of every device of the fleet, in device
// order; with --create it first registers the devices the tokens file
// does not know yet and appends their tokens to it.
func fleetTokens(ctx context.Context, cfg *Config, logf func(string, ...any)) ([]string, error) {
	known, err := readTokens(cfg.TokensFile, cfg.Create)
	if err != nil {
		return nil, err
	}
	var missing []string
	for i := range cfg.Devices {
		if id := cfg.deviceID(i); known[id] == "" {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 && !cfg.Create {
		return nil, fmt.Errorf("--tokens: %s has no token for %d of the %d devices (first: %s); add them, or use --create",
			cfg.TokensFile, len(missing), cfg.Devices, missing[0])
	}
	if len(missing) > 0 {
		logf("registering %d devices through %s", len(missing), cfg.APIURL)
		if err := createDevices(ctx, cfg, missing, known); err != nil {
			return nil, err
		}
	}
	out := make([]string, cfg.Devices)
	for i := range out {
		out[i] = known[cfg.deviceID(i)]
	}
	return out, nil
}

// createDevices registers ids through the hub's REST API, appending each
// token to the tokens file (mode 0600) as soon as it is known: a token is
// shown only once, so none may be lost if a later request fails.
func createDevices(ctx context.Context, cfg *Config, ids []string, known map[string]string) error {
	api, err := newAPIClient(cfg)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(cfg.TokensFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("--tokens: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()
	for _, id := range ids {
		tok, err := api.createDevice(ctx, id, cfg.Labels)
		if err != nil {
			return fmt.Errorf("create device %s: %w", id, err)
		}
		known[id] = tok
		if _, err := fmt.Fprintf(w, "%s %s\n", id, tok); err != nil {
			return fmt.Errorf("--tokens: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("--tokens: %w", err)
	}
	return f.Close()
}

type apiClient struct {
	base, token string
	http        *http.Client
}

// newAPIClient trusts the hub's API as the devices trust the hub (the
// agent's rules: --ca-file and/or --ca-fingerprint, else system roots).
func newAPIClient(cfg *Config) (*apiClient, error) {
	u, err := url.Parse(cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("--api-url: %w", err)
	}
	tlsCfg, err := trust.ClientConfig(u.Hostname(), cfg.CAFile, cfg.CAFingerprint)
	if err != nil {
		return nil, fmt.Errorf("API TLS: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &apiClient{base: strings.TrimSuffix(cfg.APIURL, "/"), token: cfg.AdminToken,
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// createDevice is POST /api/v1/devices {"id","labels"} -> {"token"}.
func (c *apiClient) createDevice(ctx context.Context, id string, labels map[string]string) (string, error) {
	body, _ := json.Marshal(map[string]any{"id": id, "labels": labels})
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/api/v1/devices", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	var r struct {
		Token string `json:"token"`
		Error string `json:"error"`
	}
	_ = json.Unmarshal(data, &r)
	switch {
	case resp.StatusCode == http.StatusConflict:
		return "", fmt.Errorf("%s (409): the device exists but its token is not in --tokens; delete it (fleetctl device delete %s) or pick another --id-prefix", r.Error, id)
	case resp.StatusCode/100 != 2:
		return "", fmt.Errorf("%s (%d)", cmp.Or(r.Error, http.StatusText(resp.StatusCode)), resp.StatusCode)
	case r.Token == "":
		return "", errors.New("hub answered without a token")
	}
	return r.Token, nil
}
