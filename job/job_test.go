package job

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

const valid = `{"name":"process-orders","schedule":"*/10 * * * *","timezone":"UTC","paused":false,
 "target":{"type":"http","http":{"method":"POST","url":"https://example.com/hook","headers":{},"body":"","timeout":"30s"}}}`

func decodeValidate(body string, opts Options) (*Job, error) {
	j, err := Decode(strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	j.Normalize()
	return j, j.Validate(opts)
}

func TestValidJob(t *testing.T) {
	j, err := decodeValidate(valid, Options{})
	require.NoError(t, err)
	require.Equal(t, MisfireFireOnce, j.Misfire)
	require.Equal(t, ConcurrencyForbid, j.Concurrency)
	require.Equal(t, 30*time.Second, j.AttemptTimeout())
	require.Equal(t, 1, j.MaxAttempts())
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name, body, field, fragment string
	}{
		{"empty schedule", `{"name":"a","schedule":"","target":{"type":"http","http":{"url":"http://x"}}}`, "schedule", "required"},
		{"invalid cron", `{"name":"a","schedule":"61 * * * *","target":{"type":"http","http":{"url":"http://x"}}}`, "schedule", "minute field"},
		{"unknown timezone", `{"name":"a","schedule":"* * * * *","timezone":"Mars/Base","target":{"type":"http","http":{"url":"http://x"}}}`, "timezone", "unknown time zone"},
		{"unknown target type", `{"name":"a","schedule":"* * * * *","target":{"type":"ftp"}}`, "target.type", "unknown target type"},
		{"missing target type", `{"name":"a","schedule":"* * * * *","target":{}}`, "target.type", "required"},
		{"missing url", `{"name":"a","schedule":"* * * * *","target":{"type":"http","http":{}}}`, "target.http.url", "required"},
		{"relative url", `{"name":"a","schedule":"* * * * *","target":{"type":"http","http":{"url":"/x"}}}`, "target.http.url", "absolute"},
		{"negative timeout", `{"name":"a","schedule":"* * * * *","timeout":"-5s","target":{"type":"http","http":{"url":"http://x"}}}`, "timeout", "negative"},
		{"negative http timeout", `{"name":"a","schedule":"* * * * *","target":{"type":"http","http":{"url":"http://x","timeout":"-1s"}}}`, "target.http.timeout", "negative"},
		{"bad duration", `{"name":"a","schedule":"* * * * *","jitter":"soon","target":{"type":"http","http":{"url":"http://x"}}}`, "", "invalid duration"},
		{"bad name", `{"name":"Bad Name","schedule":"* * * * *","target":{"type":"http","http":{"url":"http://x"}}}`, "name", "must match"},
		{"unknown field", `{"name":"a","schedule":"* * * * *","colour":"red","target":{"type":"http","http":{"url":"http://x"}}}`, "colour", "unknown field"},
		{"unknown nested field", `{"name":"a","schedule":"* * * * *","target":{"type":"http","http":{"url":"http://x","verb":"GET"}}}`, "verb", "unknown field"},
		{"wrong type", `{"name":"a","schedule":5,"target":{"type":"http","http":{"url":"http://x"}}}`, "schedule", "type string"},
		{"misfire", `{"name":"a","schedule":"* * * * *","misfire":"sometimes","target":{"type":"http","http":{"url":"http://x"}}}`, "misfire", "fire_once"},
		{"concurrency", `{"name":"a","schedule":"* * * * *","concurrency":"maybe","target":{"type":"http","http":{"url":"http://x"}}}`, "concurrency", "forbid"},
		{"retry attempts", `{"name":"a","schedule":"* * * * *","retry":{"max_attempts":0},"target":{"type":"http","http":{"url":"http://x"}}}`, "retry.max_attempts", "between"},
		{"amqp without routing", `{"name":"a","schedule":"* * * * *","target":{"type":"amqp","amqp":{"exchange":""}}}`, "target.amqp.routing_key", "required"},
		{"shell disabled", `{"name":"a","schedule":"* * * * *","target":{"type":"shell","shell":{"command":["/bin/true"]}}}`, "target.type", "disabled"},
		{"two objects", valid + valid, "", "exactly one"},
		{"not json", `{"name":`, "", "ends early"},
		{"empty", ``, "", "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeValidate(tc.body, Options{})
			require.Error(t, err)
			var ve *ValidationError
			require.True(t, errors.As(err, &ve), "%T %v", err, err)
			require.Equal(t, tc.field, ve.Field)
			require.Contains(t, ve.Message, tc.fragment)
		})
	}
}

func TestShellEnabled(t *testing.T) {
	body := `{"name":"a","schedule":"* * * * *","target":{"type":"shell","shell":{"command":["/usr/bin/backup","--full"]}}}`
	_, err := decodeValidate(body, Options{ShellEnabled: true})
	require.NoError(t, err)
	_, err = decodeValidate(`{"name":"a","schedule":"* * * * *","target":{"type":"shell","shell":{"command":[]}}}`, Options{ShellEnabled: true})
	require.ErrorContains(t, err, "non-empty argv")
}

func TestReadOnlyFieldsAreIgnored(t *testing.T) {
	j, err := Decode(strings.NewReader(`{"name":"a","schedule":"* * * * *","run_count":7,"created_at":"2020-01-01T00:00:00Z","next_run_at":null,
		"target":{"type":"http","http":{"url":"http://x"}}}`))
	require.NoError(t, err)
	require.Zero(t, j.RunCount)
	require.True(t, j.CreatedAt.IsZero())
}

func TestSpecEqual(t *testing.T) {
	a, err := decodeValidate(valid, Options{})
	require.NoError(t, err)
	b, err := decodeValidate(strings.Replace(valid, `"timezone":"UTC",`, ``, 1), Options{})
	require.NoError(t, err)
	b.RunCount, b.CreatedAt = 9, time.Now()
	require.True(t, SpecEqual(a, b), "defaults and read-only fields do not matter")
	b.Description = "x"
	require.False(t, SpecEqual(a, b))
}

func TestDecodeFile(t *testing.T) {
	list := `
jobs:
  - name: nightly
    schedule: "0 2 * * *"
    timezone: Europe/Berlin
    retry: {max_attempts: 3, backoff: 10s}
    target: {type: http, http: {url: "https://example.com/a"}}
  - name: every-minute
    schedule: "* * * * *"
    target: {type: amqp, amqp: {routing_key: work}}
`
	hash := `
nightly:
  schedule: "0 2 * * *"
  target: {type: http, http: {url: "https://example.com/a"}}
every-minute:
  schedule: "* * * * *"
  target: {type: amqp, amqp: {routing_key: work}}
`
	for _, body := range []string{list, hash} {
		jobs, err := DecodeFile([]byte(body), Options{})
		require.NoError(t, err)
		require.Len(t, jobs, 2)
	}
	jobs, _ := DecodeFile([]byte(list), Options{})
	require.Equal(t, 3, jobs[0].MaxAttempts())
	require.Equal(t, 10*time.Second, jobs[0].Retry.Backoff.Std())

	bad := []struct{ body, fragment string }{
		{"nightly:\n  schedule: nope\n  target: {type: http, http: {url: 'http://x'}}\n", `job "nightly"`},
		{"nightly:\n  schedul: '* * * * *'\n", "unknown field"},
		{"jobs:\n  - {name: a, schedule: '* * * * *', target: {type: amqp, amqp: {routing_key: q}}}\n  - {name: a, schedule: '* * * * *', target: {type: amqp, amqp: {routing_key: q}}}\n", "twice"},
		{"- a\n- b\n", "expected a map"},
	}
	for _, b := range bad {
		_, err := DecodeFile([]byte(b.body), Options{})
		require.ErrorContains(t, err, b.fragment)
	}
}

// TestShareStrings: two jobs decoded apart end with one copy of each string
// they have in common, and with the same values as before.
func TestShareStrings(t *testing.T) {
	a, err := Decode(strings.NewReader(valid))
	require.NoError(t, err)
	b, err := Decode(strings.NewReader(strings.Replace(valid, "process-orders", "other", 1)))
	require.NoError(t, err)
	before := *a
	beforeHTTP := *a.Target.HTTP
	a.ShareStrings()
	b.ShareStrings()
	require.Equal(t, before.Schedule, a.Schedule)
	require.Equal(t, beforeHTTP, *a.Target.HTTP)
	require.Equal(t, before.Target.Type, a.Target.Type)
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	for _, c := range []struct {
		field string
		x, y  string
	}{
		{"schedule", a.Schedule, b.Schedule},
		{"timezone", a.Timezone, b.Timezone},
		{"target.type", a.Target.Type, b.Target.Type},
		{"target.http.method", a.Target.HTTP.Method, b.Target.HTTP.Method},
		{"target.http.url", a.Target.HTTP.URL, b.Target.HTTP.URL},
	} {
		require.True(t, same(c.x, c.y), "%s is one copy", c.field)
	}
	require.False(t, same(a.Name, b.Name), "names differ, so are not shared")
}
