package runner

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// OutputCap is the most bytes of one stream (stdout or stderr) a Result keeps.
const OutputCap = 8 << 20

// capture is an io.Writer that keeps the first half and the last half of
// what is written to it, counting what it drops in between, so that a
// 500 MiB stdout costs at most limit bytes of memory.
type capture struct {
	limit   int
	head    []byte
	tail    []byte // ring buffer once full
	tailPos int    // next write position in tail when len(tail) == cap
	total   int64
}

func newCapture(limit int) *capture {
	return &capture{limit: limit}
}

func (c *capture) Write(p []byte) (int, error) {
	n := len(p)
	c.total += int64(n)
	headCap := c.limit / 2
	if room := headCap - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	tailCap := c.limit - headCap
	if len(p) >= tailCap {
		if cap(c.tail) < tailCap {
			c.tail = make([]byte, 0, tailCap)
		}
		c.tail = append(c.tail[:0], p[len(p)-tailCap:]...)
		c.tailPos = 0
		return n, nil
	}
	if len(c.tail) < tailCap {
		room := tailCap - len(c.tail)
		k := min(room, len(p))
		c.tail = append(c.tail, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(c.tail[c.tailPos:], p)
		p = p[k:]
		c.tailPos = (c.tailPos + k) % tailCap
	}
	return n, nil
}

// String returns the kept bytes as valid UTF-8 with the omission marker.
func (c *capture) String() string {
	kept := int64(len(c.head) + len(c.tail))
	if c.total <= kept {
		return lossyUTF8(append(append([]byte(nil), c.head...), c.orderedTail()...))
	}
	// Cutting at an arbitrary byte may split a multi-byte rune; lossy
	// decoding turns the fragments into U+FFFD rather than failing.
	var b strings.Builder
	b.Grow(int(kept) + 80)
	b.WriteString(lossyUTF8(c.head))
	fmt.Fprintf(&b, "\n…[kanade: %d bytes omitted]…\n", c.total-kept)
	b.WriteString(lossyUTF8(c.orderedTail()))
	return b.String()
}

// Total is the number of bytes written, kept or not.
func (c *capture) Total() int64 { return c.total }

func (c *capture) orderedTail() []byte {
	if c.tailPos == 0 {
		return c.tail
	}
	out := make([]byte, 0, len(c.tail))
	out = append(out, c.tail[c.tailPos:]...)
	return append(out, c.tail[:c.tailPos]...)
}

func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
