package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetwire/fleetwire/hub"
	"github.com/fleetwire/fleetwire/hub/mqtt/payload"
	"github.com/fleetwire/fleetwire/protocol"
)

// jsonCommand is a command as published in the "json" command format.
type jsonCommand struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Args      map[string]string `json:"args,omitempty"`
	TimeoutMs uint64            `json:"timeout_ms,omitempty"`
}

// jsonResult is a result as devices publish it in JSON.
type jsonResult struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	ExitCode   int64  `json:"exit_code"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	DurationMs uint64 `json:"duration_ms"`
	Truncated  bool   `json:"truncated"`
	Error      string `json:"error"`
}

// maxResultBytes bounds a result payload: both outputs at their cap,
// JSON-escaped (a control byte takes 6), plus room for the rest.
const maxResultBytes = 2*6*hub.MaxCommandOutput + 16<<10

// SendCommand implements hub.CommandSender: it publishes cmd to the
// device's command topic with QoS 1 and, once the broker has taken it,
// records the command as received: the broker now holds it for the
// device's session, and the command's timeout runs from here.
func (s *session) SendCommand(ctx context.Context, cmd *protocol.Command) error {
	b := s.b
	data, err := b.encodeCommand(cmd)
	if err != nil {
		return err
	}
	c, epoch := b.conn(), b.epoch.Load()
	if !c.IsConnectionOpen() {
		return errors.New("publish command: not connected to the broker")
	}
	tok := c.Publish(b.cfg.CommandTopic.Topic(s.dev), 1, false, data)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return fmt.Errorf("publish command: %w", ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish command: %w", err)
	}
	// paho completes a publish without error when it resends it after a
	// reconnect, before any PUBACK: only one whose connection never
	// changed was surely taken by the broker.
	if b.epoch.Load() != epoch {
		return errors.New("publish command: the connection changed before the broker acknowledged; sent again later")
	}
	b.metrics.commands.Inc()
	return b.cfg.Commands.HandleResult(ctx, s.dev, &protocol.CommandResult{ID: cmd.ID, State: "received"})
}

func (b *Bridge) encodeCommand(cmd *protocol.Command) ([]byte, error) {
	if b.cfg.CommandFormat == payload.FormatCBOR {
		return protocol.Encode(cmd)
	}
	return json.Marshal(jsonCommand{ID: cmd.ID, Name: cmd.Name, Args: cmd.Args, TimeoutMs: cmd.TimeoutMs})
}

// result records a command result a device published: JSON (a '{' first)
// or the protocol's CBOR result message.
func (b *Bridge) result(m paho.Message, dev string) {
	r, err := decodeResult(m.Payload())
	if err != nil {
		b.refuse(m, reasonBadResult, dev, err)
		return
	}
	if _, ok := b.deviceFor(m, dev, false); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	err = b.cfg.Commands.HandleResult(ctx, dev, r)
	switch {
	case errors.Is(err, hub.ErrNotFound):
		b.refuse(m, reasonUnknownCmd, dev, err)
	case errors.Is(err, hub.ErrInvalidInput) && strings.Contains(err.Error(), "another device"):
		// A device answering for another device's command: whatever the
		// broker's ACL let through, a result only counts from its device.
		b.refuse(m, reasonInjection, dev, err)
	case errors.Is(err, hub.ErrInvalidInput):
		b.refuse(m, reasonBadResult, dev, err)
	case err != nil:
		b.log.Error("record mqtt command result", "device", dev, "id", r.ID, "err", err)
		b.retry(m)
	default:
		b.release(m, true)
	}
}

func decodeResult(p []byte) (*protocol.CommandResult, error) {
	if len(p) > maxResultBytes {
		return nil, fmt.Errorf("result of %d bytes (at most %d)", len(p), maxResultBytes)
	}
	if len(p) == 0 {
		return nil, errors.New("empty result")
	}
	var r *protocol.CommandResult
	if t := bytes.TrimLeft(p, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		var j jsonResult
		dec := json.NewDecoder(bytes.NewReader(p))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			return nil, fmt.Errorf("result JSON: %w", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("result JSON: data after the object")
		}
		r = &protocol.CommandResult{ID: j.ID, State: j.State, ExitCode: j.ExitCode, Stdout: []byte(j.Stdout),
			Stderr: []byte(j.Stderr), DurationMs: j.DurationMs, Truncated: j.Truncated, Error: j.Error}
	} else {
		msg, err := protocol.Decode(p, maxResultBytes)
		if err != nil {
			return nil, fmt.Errorf("result CBOR: %w", err)
		}
		var ok bool
		if r, ok = msg.(*protocol.CommandResult); !ok {
			return nil, fmt.Errorf("result CBOR: a %T, want a command result", msg)
		}
	}
	if r.ID == "" {
		return nil, errors.New("result without an id")
	}
	return r, nil
}
