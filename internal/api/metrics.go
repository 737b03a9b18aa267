package api

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// MetricsWriter writes the Prometheus text exposition format. Names are
// prefixed kanade_ by the callers.
type MetricsWriter struct {
	w    io.Writer
	seen map[string]bool
}

// NewMetricsWriter writes to w (what /metrics does; also tests of the
// functions that feed it).
func NewMetricsWriter(w io.Writer) *MetricsWriter {
	return &MetricsWriter{w: w, seen: map[string]bool{}}
}

// Gauge writes one gauge sample; help and type are written once per name.
func (m *MetricsWriter) Gauge(name, help string, value float64, labels ...string) {
	m.sample(name, "gauge", help, value, labels...)
}

// Counter writes one counter sample.
func (m *MetricsWriter) Counter(name, help string, value float64, labels ...string) {
	m.sample(name, "counter", help, value, labels...)
}

func (m *MetricsWriter) sample(name, typ, help string, value float64, labels ...string) {
	if !m.seen[name] {
		fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		m.seen[name] = true
	}
	fmt.Fprintf(m.w, "%s%s %g\n", name, labelString(labels), value)
}

func labelString(kv []string) string {
	if len(kv) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", kv[i], kv[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// latencies is an HTTP latency histogram per route pattern.
type latencies struct {
	mu      sync.Mutex
	buckets []float64
	series  map[[2]string]*histogram
}

type histogram struct {
	counts []uint64
	sum    float64
	count  uint64
}

func newLatencies() *latencies {
	return &latencies{buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}, series: map[[2]string]*histogram{}}
}

func (l *latencies) observe(pattern string, status int, d time.Duration) {
	if pattern == "" {
		pattern = "unmatched"
	}
	key := [2]string{pattern, fmt.Sprint(status / 100 * 100)}
	secs := d.Seconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.series[key]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(l.buckets))}
		l.series[key] = h
	}
	for i, b := range l.buckets {
		if secs <= b {
			h.counts[i]++
		}
	}
	h.sum += secs
	h.count++
}

func (l *latencies) write(m *MetricsWriter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([][2]string, 0, len(l.series))
	for k := range l.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) })
	const name = "kanade_http_request_duration_seconds"
	if len(keys) > 0 {
		fmt.Fprintf(m.w, "# HELP %s HTTP request latency by route and status class.\n# TYPE %s histogram\n", name, name)
	}
	for _, k := range keys {
		h := l.series[k]
		for i, b := range l.buckets {
			fmt.Fprintf(m.w, "%s_bucket{route=%q,code=%q,le=\"%g\"} %d\n", name, k[0], k[1], b, h.counts[i])
		}
		fmt.Fprintf(m.w, "%s_bucket{route=%q,code=%q,le=\"+Inf\"} %d\n", name, k[0], k[1], h.count)
		fmt.Fprintf(m.w, "%s_sum{route=%q,code=%q} %g\n%s_count{route=%q,code=%q} %d\n", name, k[0], k[1], h.sum, name, k[0], k[1], h.count)
	}
}

// serveMetrics is GET /metrics (unauthenticated, like most exporters; bind
// the HTTP listener to a trusted interface).
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	m := NewMetricsWriter(w)
	if s.d.Metrics != nil {
		s.d.Metrics(m)
	}
	s.lat.write(m)
}
