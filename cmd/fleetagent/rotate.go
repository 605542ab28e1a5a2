package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
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
// the service's state directory ($STATE_DIRECTORY from systemd:
// /var/lib/fleetagent), else next to the spool. Its config in /etc is
// read-only to the service.
func (c *Config) tokenFile() string {
	return tokenFilePath(c.Hub.TokenFile, c.Spool.Dir)
}

func tokenFilePath(explicit, spoolDir string) string {
	if explicit != "" {
		return explicit
	}
	if dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); dir != "" {
		return filepath.Join(dir, "device.token")
	}
	return filepath.Join(filepath.Dir(filepath.Clean(spoolDir)), "device.token")
}

// tokenOrigin ties a kept token to the config token it replaced, so a new
// config (enrolled again, a new device token pasted in) wins over a token
// kept for the old one.
func tokenOrigin(configToken string) string {
	sum := sha256.Sum256([]byte(configToken))
	return "origin sha256:" + hex.EncodeToString(sum[:8])
}

// currentToken is the token to connect with: the kept one, if it was
// rotated from this config's hub.token, else hub.token.
func (c *Config) currentToken() (string, error) {
	b, err := os.ReadFile(c.tokenFile())
	if errors.Is(err, os.ErrNotExist) {
		return c.Hub.Token, nil
	}
	if err != nil {
		return "", fmt.Errorf("read rotated token: %w", err)
	}
	tok, origin, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !strings.HasPrefix(tok, "fwd_") {
		return "", fmt.Errorf("%s does not hold a device token; remove it to use hub.token", c.tokenFile())
	}
	if strings.TrimSpace(origin) != tokenOrigin(c.Hub.Token) {
		return c.Hub.Token, nil // kept for another config token: stale
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
	path, origin := m.Config.tokenFile(), tokenOrigin(m.Config.Hub.Token)
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
		if err := writePrivate(path, []byte(out.Token+"\n"+origin+"\n")); err != nil {
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
