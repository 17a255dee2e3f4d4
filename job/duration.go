package job

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes JSON and YAML as a Go
// duration string ("30s", "5m"). In BSON it is stored as int64 nanoseconds.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String implements fmt.Stringer.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d == 0 {
		return []byte(`""`), nil
	}
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler. It accepts a duration string, an
// empty string (zero), or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration must be a string such as \"30s\"")
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	return d.parse(s)
}

// UnmarshalText implements encoding.TextUnmarshaler (used by YAML decoders).
func (d *Duration) UnmarshalText(b []byte) error { return d.parse(string(b)) }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	if d == 0 {
		return []byte(""), nil
	}
	return []byte(time.Duration(d).String()), nil
}

func (d *Duration) parse(s string) error {
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a value such as \"30s\" or \"5m\"", s)
	}
	*d = Duration(v)
	return nil
}
