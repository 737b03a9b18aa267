package runner

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// captureModel is what a capture of limit bytes must return for everything
// written to it, computed from the whole stream: all of it when it fits,
// else the first limit/2 bytes, the marker, and the last limit-limit/2.
func captureModel(all []byte, limit int) string {
	if len(all) <= limit {
		return strings.ToValidUTF8(string(all), "\uFFFD")
	}
	head, tail := limit/2, limit-limit/2
	return strings.ToValidUTF8(string(all[:head]), "\uFFFD") +
		fmt.Sprintf("\n…[kanade: %d bytes omitted]…\n", len(all)-limit) +
		strings.ToValidUTF8(string(all[len(all)-tail:]), "\uFFFD")
}

// positions returns n bytes whose value at each offset is distinguishable
// from its neighbours (printable, cycling through 62 symbols), so a misplaced
// or rotated slice shows.
func positions(n int) []byte {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	return b
}

// writeChunks writes all to c in chunks of the given size (0: one write).
func writeChunks(t *testing.T, c *capture, all []byte, chunk int) {
	t.Helper()
	if chunk <= 0 {
		chunk = max(len(all), 1)
	}
	for p := all; len(p) > 0; {
		k := min(chunk, len(p))
		n, err := c.Write(p[:k])
		if n != k || err != nil {
			t.Fatalf("Write must accept everything (io.Writer contract): wrote %d of %d, err %v", n, k, err)
		}
		p = p[k:]
	}
}

func TestCaptureSizes(t *testing.T) {
	const limit = 16
	tests := []struct {
		name       string
		size       int
		wantMarker bool
	}{
		{"empty", 0, false},
		{"one byte", 1, false},
		{"below the limit keeps everything", limit - 1, false},
		{"exactly the limit keeps everything", limit, false},
		{"one byte above the limit omits one", limit + 1, true},
		{"far above the limit", 10 * limit, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := positions(tt.size)
			c := newCapture(limit)
			writeChunks(t, c, all, 0)
			got := c.String()
			if want := captureModel(all, limit); got != want {
				t.Errorf("String():\n got: %q\nwant: %q", got, want)
			}
			if c.Total() != int64(tt.size) {
				t.Errorf("Total() = %d, want every byte written (%d)", c.Total(), tt.size)
			}
			if hasMarker := strings.Contains(got, "bytes omitted]"); hasMarker != tt.wantMarker {
				t.Errorf("marker present = %v, want %v: %q", hasMarker, tt.wantMarker, got)
			}
			if tt.wantMarker {
				omitted := fmt.Sprintf("…[kanade: %d bytes omitted]…", tt.size-limit)
				if !strings.Contains(got, omitted) {
					t.Errorf("marker must count the %d dropped bytes: %q", tt.size-limit, got)
				}
				if !strings.HasPrefix(got, string(all[:limit/2])) || !strings.HasSuffix(got, string(all[tt.size-limit/2:])) {
					t.Errorf("must keep the first and last %d bytes: %q", limit/2, got)
				}
			}
		})
	}
}

func TestCaptureExactOutput(t *testing.T) {
	c := newCapture(8)
	writeChunks(t, c, []byte("abcdefghijklmnopqrst"), 3)
	if got, want := c.String(), "abcd\n…[kanade: 12 bytes omitted]…\nqrst"; got != want {
		t.Errorf("String() = %q, want %q (head 4, marker, tail 4)", got, want)
	}
}

// TestCaptureChunkingIsInvisible writes the same stream in many chunk sizes
// (including sizes that wrap the tail ring at every offset, and chunks
// larger than the tail) and requires the same result as one big write and
// as the model.
func TestCaptureChunkingIsInvisible(t *testing.T) {
	for _, limit := range []int{1, 2, 7, 10, 64} {
		for _, size := range []int{0, limit / 2, limit, limit + 1, 3*limit + 5, 1000} {
			all := positions(size)
			one := newCapture(limit)
			writeChunks(t, one, all, 0)
			want := captureModel(all, limit)
			if got := one.String(); got != want {
				t.Errorf("limit %d size %d, one write:\n got: %q\nwant: %q", limit, size, got, want)
			}
			for _, chunk := range []int{1, 2, 3, 5, limit/2 + 1, limit - 1, limit, limit + 3, 97} {
				if chunk <= 0 {
					continue
				}
				c := newCapture(limit)
				writeChunks(t, c, all, chunk)
				if got := c.String(); got != want {
					t.Errorf("limit %d size %d, writes of %d differ from one write:\n got: %q\nwant: %q",
						limit, size, chunk, got, want)
				}
				if c.Total() != int64(size) {
					t.Errorf("limit %d size %d chunk %d: Total() = %d", limit, size, chunk, c.Total())
				}
			}
		}
	}
}

// TestCaptureTailRingWraps checks the ring explicitly: after enough small
// writes the write position is mid-buffer, yet the tail comes out in stream
// order.
func TestCaptureTailRingWraps(t *testing.T) {
	c := newCapture(20) // head 10, tail 10
	all := positions(10 + 10 + 7)
	writeChunks(t, c, all, 3)
	if c.tailPos == 0 {
		t.Fatalf("test setup: expected the ring to have wrapped to a non-zero position")
	}
	if got, want := string(c.orderedTail()), string(all[len(all)-10:]); got != want {
		t.Errorf("ordered tail = %q, want the last 10 bytes in order %q", got, want)
	}
	// A later write bigger than the tail replaces the ring wholesale and
	// resets the position.
	more := []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	writeChunks(t, c, more, 0)
	if got, want := string(c.orderedTail()), "QRSTUVWXYZ"; got != want {
		t.Errorf("after a write larger than the tail, ordered tail = %q, want %q", got, want)
	}
	if want := captureModel(append(all, more...), 20); c.String() != want {
		t.Errorf("String() = %q, want %q", c.String(), want)
	}
}

func TestCaptureUTF8(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		in    string
		chunk int
		want  string // exact; empty means only check validity and keep
		keep  []string
	}{
		{
			name:  "invalid bytes become U+FFFD and the text around them stays",
			limit: 64, in: "ok\xff\xfe still here\n", want: "ok\uFFFD still here\n",
		},
		{
			name:  "CP932 bytes do not erase the result",
			limit: 64, in: "result: \x93\x8c\x8b\x9e done", keep: []string{"result: ", " done", "\uFFFD"},
		},
		{
			name:  "a rune split between head and tail below the limit stays intact",
			limit: 8, in: "abc東", chunk: 1, want: "abc東",
		},
		{
			name:  "runes split at both cuts give valid UTF-8",
			limit: 10, in: strings.Repeat("東", 10), // 30 bytes: head cuts after 1⅔ runes, tail starts mid-rune
			want: "東\uFFFD\n…[kanade: 20 bytes omitted]…\n\uFFFD東",
		},
		{
			name:  "split rune with chunked writes",
			limit: 10, in: "ab東京大阪xy", chunk: 2, keep: []string{"ab", "xy", "bytes omitted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCapture(tt.limit)
			writeChunks(t, c, []byte(tt.in), tt.chunk)
			got := c.String()
			if !utf8.ValidString(got) {
				t.Fatalf("String() must always be valid UTF-8, got %q", got)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			for _, k := range tt.keep {
				if !strings.Contains(got, k) {
					t.Errorf("String() = %q lost %q", got, k)
				}
			}
		})
	}
}

// TestCaptureIsolatedFromCaller checks the capture copies what it keeps: an
// io.Writer must not retain p, and os/exec reuses its read buffer.
func TestCaptureIsolatedFromCaller(t *testing.T) {
	c := newCapture(8)
	buf := []byte("0123456789ab")
	writeChunks(t, c, buf, 0)
	copy(buf, "XXXXXXXXXXXX")
	if got, want := c.String(), "0123\n…[kanade: 4 bytes omitted]…\n89ab"; got != want {
		t.Errorf("capture must copy written bytes: got %q, want %q", got, want)
	}
	c = newCapture(8)
	buf = []byte("0123")
	writeChunks(t, c, buf, 0)
	copy(buf, "XXXX")
	if got := c.String(); got != "0123" {
		t.Errorf("capture must copy written bytes below the limit: got %q", got)
	}
}

func BenchmarkCaptureWrite(b *testing.B) {
	p := bytes.Repeat([]byte("kanade benchmark output line\n"), (32<<10)/29+1)[:32<<10]
	c := newCapture(OutputCap)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}
