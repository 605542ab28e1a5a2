package protocol

import (
	"strconv"
	"strings"
	"time"
)

// CloseCode is the status code of a WebSocket close frame (RFC 6455 §7.4).
// Fleetwire's own codes live in the private range 4000-4999 (§7.4.2); each
// tells the agent whether and how to reconnect (SPEC.md "Close codes").
type CloseCode uint16

// Close codes. Values are part of the wire format: never renumber.
const (
	CloseNormal             CloseCode = 1000 // agent shutting down, or an orderly end
	CloseGoingAway          CloseCode = 1001 // hub shutting down
	CloseProtocolError      CloseCode = 4000 // peer broke the session rules
	CloseUnsupportedVersion CloseCode = 4001 // hello.protocol_version not spoken by this hub
	CloseTooBig             CloseCode = 4002 // message over settings.max_message_bytes
	CloseInvalidData        CloseCode = 4003 // message decoded but its content is invalid
	CloseReplaced           CloseCode = 4004 // a newer session of the same device took over
	CloseRevoked            CloseCode = 4005 // device revoked or token no longer valid
	ClosePolicy             CloseCode = 4006 // rate limit or other policy; honour the retry-after hint
	CloseOverloaded         CloseCode = 4007 // hub cannot take more load now
	CloseIdle               CloseCode = 4008 // no traffic for 2.5 ping intervals
	CloseRotateToken        CloseCode = 4009 // rotate the device token (POST /api/v1/device/token), then reconnect with the new one
)

// MaxCloseReason is the longest close reason in bytes: a close frame is a
// control frame, whose payload (2-byte code + reason) is at most 125 bytes
// (RFC 6455 §5.5).
const MaxCloseReason = 123

// RetryPolicy says what an agent does after its session ended with a code.
type RetryPolicy uint8

// Retry policies. The first two values are the original ones; keep their
// numbers (code outside this package compares against them).
const (
	// RetryBackoff: reconnect with capped, jittered exponential backoff.
	RetryBackoff RetryPolicy = iota
	// RetryNever: do not reconnect with the same binary and credentials; an
	// operator has to act (upgrade, new token) or another session lives. An
	// agent that is restarted anyway (systemd) waits hours before a new try.
	RetryNever
	// RetryNow: reconnect after a short random delay (0-1 s) and reset the
	// backoff; the condition was specific to the old connection.
	RetryNow
	// RetryAfterHint: wait the retry-after hint carried in the close reason
	// (see ParseRetryAfter); without a hint, behave as RetryBackoff.
	RetryAfterHint
)

// String names the policy for logs.
func (p RetryPolicy) String() string {
	switch p {
	case RetryBackoff:
		return "backoff"
	case RetryNever:
		return "never"
	case RetryNow:
		return "now"
	case RetryAfterHint:
		return "after_hint"
	}
	return "unknown"
}

// Retry returns how an agent reacts to c. Codes this build does not know
// (including 1006, a connection lost without a close frame) get
// RetryBackoff: retrying slowly is safe, giving up is not.
func (c CloseCode) Retry() RetryPolicy {
	switch c {
	case CloseTooBig, CloseInvalidData, CloseIdle, CloseRotateToken:
		return RetryNow
	case ClosePolicy, CloseGoingAway:
		return RetryAfterHint
	case CloseUnsupportedVersion, CloseReplaced, CloseRevoked:
		return RetryNever
	}
	return RetryBackoff
}

// String names the code for logs and metric labels; every code this package
// does not define is "other", which keeps label cardinality bounded.
func (c CloseCode) String() string {
	switch c {
	case CloseNormal:
		return "normal"
	case CloseGoingAway:
		return "going_away"
	case CloseProtocolError:
		return "protocol_error"
	case CloseUnsupportedVersion:
		return "unsupported_version"
	case CloseTooBig:
		return "too_big"
	case CloseInvalidData:
		return "invalid_data"
	case CloseReplaced:
		return "replaced"
	case CloseRevoked:
		return "revoked"
	case ClosePolicy:
		return "policy"
	case CloseOverloaded:
		return "overloaded"
	case CloseIdle:
		return "idle"
	case CloseRotateToken:
		return "rotate_token"
	}
	return "other"
}

// retryAfterKey starts the machine-readable hint inside a close reason.
const retryAfterKey = "retry-after="

// FormatRetryAfter appends the retry-after hint to reason, in whole seconds
// rounded up (at least 1), e.g. "rate limit; retry-after=30". The result is
// cut to MaxCloseReason bytes keeping the hint, since the hint is what the
// agent acts on.
func FormatRetryAfter(reason string, d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	hint := retryAfterKey + strconv.FormatInt(secs, 10)
	if reason == "" {
		return hint
	}
	room := MaxCloseReason - len(hint) - 2
	if len(reason) > room {
		reason = reason[:room]
	}
	return reason + "; " + hint
}

// ParseRetryAfter finds the hint written by FormatRetryAfter in a close
// reason. It reports false when there is none or it is not a positive
// integer number of seconds of at most one day (a larger value is a broken
// or hostile hub; the agent's own backoff applies then).
func ParseRetryAfter(reason string) (time.Duration, bool) {
	i := strings.LastIndex(reason, retryAfterKey)
	if i < 0 {
		return 0, false
	}
	s := reason[i+len(retryAfterKey):]
	if j := strings.IndexAny(s, "; "); j >= 0 {
		s = s[:j]
	}
	return ParseRetryAfterSeconds(s)
}

// ParseRetryAfterSeconds reads a whole number of seconds, 1 to one day:
// the hint's value, and HTTP's Retry-After header in delay-seconds form
// (an HTTP date, zero or anything larger reports false: backoff applies).
func ParseRetryAfterSeconds(s string) (time.Duration, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == 0 || n > maxRetryAfterSecs {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

const maxRetryAfterSecs = 24 * 60 * 60
