package protocol

// CloseCode is the status code of the WebSocket close frame that ends a
// session (RFC 6455 §7.4; 4000-4999 are private codes). It tells the agent
// whether and how to retry. See SPEC.md "Close codes".
type CloseCode uint16

// Close codes. Values are part of the wire format.
const (
	CloseNormal             CloseCode = 1000 // agent shutting down
	CloseGoingAway          CloseCode = 1001 // hub shutdown: retry with backoff
	CloseProtocolError      CloseCode = 4000 // retry with backoff
	CloseUnsupportedVersion CloseCode = 4001 // do not retry until upgraded
	CloseTooBig             CloseCode = 4002 // retry
	CloseInvalidData        CloseCode = 4003 // retry
	CloseReplaced           CloseCode = 4004 // a newer session of this device exists
	CloseRevoked            CloseCode = 4005 // token no longer valid: do not retry
	ClosePolicy             CloseCode = 4006 // policy or rate limit: retry later
	CloseOverloaded         CloseCode = 4007 // hub overloaded: retry with backoff
	CloseIdle               CloseCode = 4008 // idle timeout: retry
)

// RetryPolicy says what a device does after a close.
type RetryPolicy uint8

// Retry policies.
const (
	RetryBackoff RetryPolicy = iota // reconnect after the usual jittered backoff
	RetryNever                      // do not reconnect until reconfigured; back off for hours
)

// Retry returns the policy for c. Unknown codes retry with backoff.
func (c CloseCode) Retry() RetryPolicy {
	switch c {
	case CloseUnsupportedVersion, CloseReplaced, CloseRevoked:
		return RetryNever
	}
	return RetryBackoff
}

// String names the code for logs and metrics.
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
	}
	return "other"
}
