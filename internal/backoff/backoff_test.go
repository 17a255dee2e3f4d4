package backoff

import (
	"testing"
	"time"
)

func TestBackoffIsCappedAndJittered(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	seen := map[time.Duration]bool{}
	for i := range 200 {
		d := b.Next()
		if d < 50*time.Millisecond || d > 2*time.Second {
			t.Fatalf("attempt %d: delay %s outside [50ms, 2s]", i, d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("delays are not jittered: %d distinct values out of 200", len(seen))
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset the first delay should be at most Min, got %s", d)
	}
}
