package target_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     target.Config
		wantErr string
	}{
		{name: "negative MaxConnsPerHost", cfg: target.Config{MaxConnsPerHost: -1}, wantErr: "MaxConnsPerHost"},
		{name: "bad AMQP scheme", cfg: target.Config{AMQPURL: "http://guest:hunter2@localhost/"}, wantErr: "AMQPURL"},
		{name: "unparsable AMQP URL", cfg: target.Config{AMQPURL: "amqp://guest:hunter2@localhost:port/"}, wantErr: "AMQPURL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := target.New(tc.cfg)
			require.ErrorContains(t, err, tc.wantErr)
			require.NotContains(t, err.Error(), "hunter2", "the password is never quoted")
		})
	}
}

// TestMisconfigured checks that a target that cannot work fails at once,
// without retries, and says why.
func TestMisconfigured(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWait: true})
	retry := withRetry(5, 1, 1)
	tests := []struct {
		name    string
		j       *job.Job
		wantErr string
	}{
		{name: "unknown type", j: normalized(&job.Job{Target: job.Target{Type: "carrier-pigeon"}}, nil), wantErr: `unknown target type "carrier-pigeon"`},
		{name: "http without url", j: httpJob("", retry), wantErr: "no url"},
		{name: "http with a bad url", j: httpJob("http://exa mple.com/", retry), wantErr: "build the request"},
		{name: "amqp without a broker", j: amqpJob("", "q", retry), wantErr: target.ErrNoBroker.Error()},
		{name: "shell disabled", j: shellJob([]string{"/bin/true"}, retry), wantErr: job.ErrShellDisabled.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			allow := &countingAllow{n: 100}
			res := b.disp.Dispatch(context.Background(), fireOf(tc.j), allow.allow)
			require.Equal(t, store.StatusFailed, res.Status)
			require.Contains(t, res.Error, tc.wantErr)
			require.LessOrEqual(t, len(res.Attempts), 1, "not retried")
			require.Zero(t, allow.calls, "nothing was about to be sent")
		})
	}

	t.Run("no job", func(t *testing.T) {
		t.Parallel()
		res := b.disp.Dispatch(context.Background(), target.Fire{FireID: "f"}, allowAll)
		require.Equal(t, store.StatusFailed, res.Status)
		require.Contains(t, res.Error, "no job")
	})
}

func TestSecretsAreNotLogged(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWait: true, cfg: target.Config{AMQPURL: "amqp://baton:hunter2@127.0.0.1:1/"}})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	hj := httpJob(rc.URL, withRetry(2, 1, 1), func(j *job.Job) {
		j.Target.HTTP.Headers = map[string]string{"Authorization": "Bearer s3cret-token", "X-Api-Key": "s3cret-key"}
		j.Target.HTTP.SecretHeaders = []string{"Authorization", "X-Api-Key"}
	})
	res := b.disp.Dispatch(context.Background(), fireOf(hj), allowAll)
	require.Equal(t, store.StatusFailed, res.Status)
	res = b.disp.Dispatch(context.Background(), fireOf(amqpJob("", "q")), allowAll)
	require.Equal(t, store.StatusFailed, res.Status)
	require.Contains(t, res.Error, "connect to the broker")
	require.NotContains(t, res.Error, "hunter2")

	logs := b.logs.String()
	require.Contains(t, logs, "fire failed", "the failures were logged")
	require.Contains(t, logs, "attempt failed; retrying")
	require.Contains(t, logs, "baton:xxxxx@127.0.0.1:1", "the broker is named, redacted")
	for _, secret := range []string{"s3cret", "hunter2"} {
		require.NotContains(t, logs, secret)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	d, err := target.New(target.Config{})
	require.NoError(t, err)
	rc := newReceiver(t, nil)
	require.Equal(t, store.StatusSucceeded, d.Dispatch(context.Background(), fireOf(httpJob(rc.URL)), allowAll).Status)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "idempotent")
	res := d.Dispatch(context.Background(), fireOf(httpJob(rc.URL)), allowAll)
	require.Equal(t, store.StatusCancelled, res.Status)
	require.Equal(t, target.ErrClosed.Error(), res.Error)
	require.Len(t, rc.seen(), 1, "nothing is sent after Close")
}
