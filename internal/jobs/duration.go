package jobs

import (
	"encoding/json"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kanade-project/kanade/internal/wire"
)

// Duration is a time.Duration written as "30s", "10m", "6h" or "7d" in
// YAML and JSON (wire.ParseDuration); JSON also accepts a number of seconds.
// It is marshalled in its shortest form ("10m", not "10m0s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// IsZero lets yaml and json omit zero durations.
func (d Duration) IsZero() bool { return d == 0 }

// String returns the canonical form: whole days as "7d", otherwise Go's
// form without trailing zero units ("1h", "1h30m", "90s" → "1m30s").
func (d Duration) String() string {
	v := time.Duration(d)
	const day = 24 * time.Hour
	if v >= day && v%day == 0 {
		return formatInt(int64(v/day)) + "d"
	}
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func formatInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// MarshalYAML writes the canonical string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*d = 0
		return nil
	}
	v, err := wire.ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the canonical string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var w wire.Duration
	if err := w.UnmarshalJSON(b); err != nil {
		return err
	}
	*d = Duration(w)
	return nil
}
