package target

import (
	"strings"
	"unicode/utf8"
)

// clipMarker ends a clipped error text.
const clipMarker = " …[truncated]"

// clip returns s as valid UTF-8 of at most n bytes, cut at a rune boundary
// and marked when it was cut. Errors quote response bodies and broker
// replies, which need not be UTF-8, and the store wants valid strings.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD") // no copy when s is valid
	if len(s) <= n {
		return s
	}
	cut := max(n-len(clipMarker), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + clipMarker
}

// outputMarker starts an output that lost its head.
const outputMarker = "[output truncated: its beginning was dropped]\n"

// tailBuffer keeps the last max bytes written to it: the end of a command's
// output is where it says why it failed. It is written by one goroutine and
// read after that goroutine ends, so it needs no lock.
type tailBuffer struct {
	buf       []byte
	max       int
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	// Compact only once the buffer doubles, so a chatty command costs one
	// copy per max bytes rather than one per write.
	if len(t.buf) > 2*t.max {
		t.buf = t.buf[:copy(t.buf, t.buf[len(t.buf)-t.max:])]
		t.truncated = true
	}
	return len(p), nil
}

// String returns the output as valid UTF-8 of at most max bytes, the
// marker included when the head was dropped.
func (t *tailBuffer) String() string {
	b, truncated := t.buf, t.truncated
	if len(b) > t.max {
		b, truncated = b[len(b)-t.max:], true
	}
	if truncated {
		// Do not start in the middle of a character.
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if !truncated && len(s) <= t.max {
		return s
	}
	// Replacement characters can make s longer than max again.
	return outputMarker + tail(s, t.max-len(outputMarker))
}

// tail returns the last n bytes of s or fewer, starting at a rune boundary.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

// trimPartialRune drops a character cut off at the end of b.
func trimPartialRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}
