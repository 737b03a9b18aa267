package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// DecodeCommand parses and validates a Command as an agent must before
// acting on it. Every field that ends up in a subject or a file name is
// checked here; a missing exec_id becomes the request_id and a missing job
// id AdhocJobID. The error says what is wrong and what is expected: it is
// the stderr of the error result the sender gets.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("not a Command JSON object: %w", err)
	}
	if err := CheckToken("request_id", c.RequestID); err != nil {
		return c, err
	}
	if c.ExecID == "" {
		c.ExecID = c.RequestID
	}
	if err := CheckToken("exec_id", c.ExecID); err != nil {
		return c, err
	}
	if strings.TrimSpace(c.Script) == "" {
		return c, errors.New("script is empty: nothing to run")
	}
	switch c.Shell {
	case "", ShellPowerShell, ShellPwsh, ShellCmd, ShellSh, ShellBash:
	default:
		return c, fmt.Errorf("unknown shell %q: expected powershell, pwsh, cmd, sh, bash or empty for the platform default", c.Shell)
	}
	if c.TimeoutSecs < 0 || c.JitterSecs < 0 {
		return c, errors.New("timeout_secs and jitter_secs must not be negative")
	}
	if c.Retry != nil && (c.Retry.Max < 0 || c.Retry.BackoffSecs < 0) {
		return c, errors.New("retry.max and retry.backoff_secs must not be negative")
	}
	if c.Staleness != nil {
		switch c.Staleness.Mode {
		case "", StalenessCached, StalenessUnchecked:
		case StalenessStrict:
			if c.Staleness.MaxCacheAge <= 0 {
				return c, errors.New("staleness mode strict needs a positive max_cache_age, e.g. \"10m\"")
			}
		default:
			return c, fmt.Errorf("unknown staleness mode %q: expected cached, strict or unchecked", c.Staleness.Mode)
		}
	}
	if c.ID == "" {
		c.ID = AdhocJobID
	}
	return c, nil
}

// RecoverRequestID digs a usable request_id out of a payload that failed
// validation, so the sender still gets an answer; "" when there is none
// that is a valid subject token.
func RecoverRequestID(b []byte) string {
	rid := RecoverString(b, "request_id")
	if !ValidToken(rid) {
		return ""
	}
	return rid
}

// RecoverString returns the first non-empty string field of keys in a JSON
// object, or "" (any decoding failure): a best effort on refused payloads.
func RecoverString(b []byte, keys ...string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return ""
	}
	for _, k := range keys {
		var s string
		if json.Unmarshal(m[k], &s) == nil && s != "" {
			return s
		}
	}
	return ""
}
