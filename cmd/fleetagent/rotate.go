package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tokenFile is where a rotated device token is kept: hub.token_file, else
// next to the spool (/var/lib/fleetagent/device.token), the one place the
// service may write (its config in /etc is read-only to it).
func (c *Config) tokenFile() string {
	if c.Hub.TokenFile != "" {
		return c.Hub.TokenFile
	}
	return filepath.Join(filepath.Dir(filepath.Clean(c.Spool.Dir)), "device.token")
}

// currentToken is the token to connect with: a rotated one from the token
// file, else hub.token.
func (c *Config) currentToken() (string, error) {
	b, err := os.ReadFile(c.tokenFile())
	if errors.Is(err, os.ErrNotExist) {
		return c.Hub.Token, nil
	}
	if err != nil {
		return "", fmt.Errorf("read rotated token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, "fwd_") {
		return "", fmt.Errorf("%s does not hold a device token; remove it to use hub.token", c.tokenFile())
	}
	return tok, nil
}

// rotator returns the link's Rotate hook: it asks the hub for a new token
// with the current one (POST /api/v1/device/token) and keeps it in the
// token file before the link uses it, so a restart never goes back to a
// token the hub has retired.
func (m *Main) rotator(tlsCfg *tls.Config) func(ctx context.Context, current string) (string, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}}
	endpoint := apiURL(m.Config.Hub.URL, "/api/v1/device/token")
	path := m.Config.tokenFile()
	return func(ctx context.Context, current string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", endpoint, bytes.NewReader(nil))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+current)
		res, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("rotate token: %w", err)
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		var out struct {
			Token string `json:"token"`
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &out)
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(out.Token, "fwd_") {
			return "", fmt.Errorf("rotate token: hub answered %d %s", res.StatusCode, out.Error)
		}
		if err := writePrivate(path, []byte(out.Token+"\n")); err != nil {
			return "", fmt.Errorf("rotate token: keep it in %s: %w", path, err)
		}
		return out.Token, nil
	}
}

// apiURL turns the device endpoint (wss://h:p/v1/device) into the URL of
// an API path on the same hub (https://h:p/api/...).
func apiURL(deviceURL, path string) string {
	u, err := url.Parse(deviceURL)
	if err != nil {
		return ""
	}
	u.Scheme = map[string]string{"wss": "https", "ws": "http"}[u.Scheme]
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/v1/device") + path
	return u.String()
}
