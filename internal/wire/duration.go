package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Duration is a time.Duration that travels as a Go duration string ("30s",
// "10m", "24h"). Plain JSON numbers are accepted as seconds so that
// hand-written payloads do not fail on a bare 30.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// IsZero lets encoding/json omit zero durations.
func (d Duration) IsZero() bool { return d == 0 }

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// durationFormat is the expected format, quoted by every parse error.
const durationFormat = `expected a number with a unit, like "30s", "10m", "24h" or "7d"`

func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = 0
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration must be a string like \"30s\", \"10m\", \"24h\" or \"7d\", or a number of seconds, got %s", b)
		}
		v, err := scaleDuration(secs, float64(time.Second))
		if err != nil {
			return fmt.Errorf("invalid duration %s (seconds): %w", b, err)
		}
		*d = Duration(v)
		return nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses Go duration strings, plus a day suffix ("7d"), and
// rejects negative values.
func ParseDuration(s string) (time.Duration, error) {
	var v time.Duration
	var err error
	if n := len(s); n > 1 && s[n-1] == 'd' {
		v, err = parseDays(s[:n-1])
	} else {
		v, err = time.ParseDuration(s)
	}
	switch {
	case errors.Is(err, errNegative), errors.Is(err, errTooLarge):
		return 0, fmt.Errorf("invalid duration %q: %w", s, err)
	case err != nil:
		return 0, fmt.Errorf("invalid duration %q: %s", s, durationFormat)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return v, nil
}

// parseDays parses the number in front of a "d" suffix: an optional sign,
// decimal digits and at most one decimal point. Anything else ("7h", "inf",
// "1e3", "1_0") is an error rather than a silently different value.
func parseDays(num string) (time.Duration, error) {
	digits, dots := 0, 0
	for i, c := range num {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		case (c == '-' || c == '+') && i == 0:
		default:
			return 0, fmt.Errorf("bad day count %q", num)
		}
	}
	if digits == 0 || dots > 1 {
		return 0, fmt.Errorf("bad day count %q", num)
	}
	days, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, err
	}
	return scaleDuration(days, float64(24*time.Hour))
}

var (
	errNegative = errors.New("must not be negative")
	errTooLarge = fmt.Errorf("too large (the maximum is %s)", time.Duration(math.MaxInt64))
)

// scaleDuration returns n units, refusing negative, non-finite and
// out-of-range values (a float-to-int conversion out of range silently
// yields a negative Duration).
func scaleDuration(n, unit float64) (time.Duration, error) {
	switch {
	case math.IsNaN(n) || math.IsInf(n, 0):
		return 0, fmt.Errorf("not a finite number")
	case n < 0:
		return 0, errNegative
	}
	ns := n * unit
	if ns >= math.MaxInt64 { // float64(MaxInt64) is 2^63, itself out of range
		return 0, errTooLarge
	}
	return time.Duration(ns), nil
}
