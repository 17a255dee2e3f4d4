package config

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain clears BATON_* variables from the environment the tests run in,
// so that only t.Setenv decides what Load sees.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, envPrefix+"_") {
			os.Unsetenv(name)
		}
	}
	os.Exit(m.Run())
}

// writeFile writes body to a temporary config file and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "baton.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// loadWith sets env, writes file (if any) and loads it.
func loadWith(t *testing.T, file string, env map[string]string) (*Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	path := ""
	if file != "" {
		path = writeFile(t, file)
	}
	return Load(path)
}

// withComputed returns Default() with the computed defaults Load fills when
// neither the file nor the environment sets them.
func withComputed(t *testing.T) *Config {
	t.Helper()
	host, err := os.Hostname()
	require.NoError(t, err)
	c := Default()
	c.Instance.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	c.Mongo.Database = c.Cluster.Name
	return c
}

func TestDefault(t *testing.T) {
	t.Parallel()

	c, err := Load("")
	require.NoError(t, err)
	require.Equal(t, withComputed(t), c)
	require.Equal(t, "baton", c.Mongo.Database, "the database defaults to the cluster name")

	require.NoError(t, withComputed(t).Validate())
	err = Default().Validate()
	require.ErrorContains(t, err, "instance.id: must not be empty", "Default leaves the computed defaults to Load")

	c, err = Load(writeFile(t, ""))
	require.NoError(t, err)
	require.Equal(t, withComputed(t), c, "an empty file means every default")
}

// TestRepositoryConfigYAML checks that config.yaml at the repository root
// sets every key to its default, with a comment on each.
func TestRepositoryConfigYAML(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "config.yaml")

	c, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, withComputed(t), c)

	documented := commentedKeys(t, path)
	for key := range keys(Default()) {
		require.Contains(t, documented, key, "config.yaml must set %s", key)
		require.True(t, documented[key], "config.yaml must comment on %s", key)
	}
}

// commentedKeys reads a YAML file of nested maps and reports, for each leaf
// key path, whether a comment sits on the line above it or at its end.
func commentedKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()

	type level struct {
		indent int
		key    string
	}
	var (
		out       = map[string]bool{}
		stack     []level
		commented bool // the previous non-blank line is a comment
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		text := strings.TrimSpace(line)
		switch {
		case text == "":
			commented = false
			continue
		case strings.HasPrefix(text, "#"):
			commented = true
			continue
		}
		key, value, ok := strings.Cut(text, ":")
		require.True(t, ok, "config.yaml: unexpected line %q", line)
		indent := len(line) - len(strings.TrimLeft(line, " "))
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		parts := []string{}
		for _, l := range stack {
			parts = append(parts, l.key)
		}
		full := strings.Join(append(parts, key), ".")
		if strings.TrimSpace(value) == "" {
			stack = append(stack, level{indent, key}) // a section
		} else {
			out[full] = commented || strings.Contains(value, " #")
		}
		commented = false
	}
	require.NoError(t, sc.Err())
	return out
}

func TestLoad(t *testing.T) {
	const file = "cluster:\n  name: payments\nlease:\n  ttl: 8s\namqp:\n  url: amqp://u:p@file-host:5672/\n"

	tests := []struct {
		name  string
		file  string
		env   map[string]string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "file overrides defaults",
			file: file,
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "payments", c.Cluster.Name)
				require.Equal(t, "payments", c.Mongo.Database)
				require.Equal(t, 8*time.Second, c.Lease.TTL)
				require.Equal(t, "amqp://u:p@file-host:5672/", c.AMQP.URL)
				require.Equal(t, time.Second, c.Lease.RenewInterval, "keys absent from the file keep their default")
			},
		},
		{
			name: "environment overrides file",
			file: file,
			env: map[string]string{
				"BATON_AMQP_URL":              "amqp://u:p@env-host:5672/",
				"BATON_LEASE_TTL":             "12s",
				"BATON_TARGETS_SHELL_ENABLED": "true",
				"BATON_CLUSTER_NAME":          "billing",
			},
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "amqp://u:p@env-host:5672/", c.AMQP.URL)
				require.Equal(t, 12*time.Second, c.Lease.TTL)
				require.True(t, c.Targets.Shell.Enabled)
				require.Equal(t, "billing", c.Cluster.Name)
				require.Equal(t, "billing", c.Mongo.Database, "the database follows the cluster name from the environment")
			},
		},
		{
			name: "environment sets keys absent from the file and keys whose default is empty",
			file: file,
			env: map[string]string{
				"BATON_LEASE_RENEW_INTERVAL":       "2s",
				"BATON_HTTP_SHUTDOWN_TIMEOUT":      "30s",
				"BATON_INSTANCE_ID":                "baton-7",
				"BATON_INSTANCE_DATACENTER":        "dc-b",
				"BATON_SCHEDULE":                   "/etc/baton/jobs.yaml",
				"BATON_AUTH_TOKENS_FILE":           "/etc/baton/tokens",
				"BATON_AUTH_ANONYMOUS_READ":        "true",
				"BATON_AUTH_ALLOW_INSECURE_REMOTE": "true",
				"BATON_EXECUTOR_WORKERS":           "64",
				"BATON_METRICS_PER_JOB":            "true",
				"BATON_LOG_FORMAT":                 "text",
			},
			check: func(t *testing.T, c *Config) {
				require.Equal(t, 2*time.Second, c.Lease.RenewInterval)
				require.Equal(t, 30*time.Second, c.HTTP.ShutdownTimeout)
				require.Equal(t, "baton-7", c.Instance.ID)
				require.Equal(t, "dc-b", c.Instance.Datacenter)
				require.Equal(t, "/etc/baton/jobs.yaml", c.Schedule)
				require.Equal(t, "/etc/baton/tokens", c.Auth.TokensFile)
				require.True(t, c.Auth.AnonymousRead)
				require.True(t, c.Auth.AllowInsecureRemote)
				require.Equal(t, 64, c.Executor.Workers)
				require.True(t, c.Metrics.PerJob)
				require.Equal(t, "text", c.Log.Format)
			},
		},
		{
			name: "an explicit database is not replaced by the cluster name",
			file: "mongo:\n  database: shared\n",
			env:  map[string]string{"BATON_CLUSTER_NAME": "billing"},
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "billing", c.Cluster.Name)
				require.Equal(t, "shared", c.Mongo.Database)
			},
		},
		{
			name: "database from the environment",
			file: file,
			env:  map[string]string{"BATON_MONGO_DATABASE": "shared"},
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "shared", c.Mongo.Database)
			},
		},
		{
			name: "auth tokens from the file",
			file: "auth:\n  tokens:\n    - {token: t1, role: write}\n    - {token: t2, role: read}\n  anonymous_read: true\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, []AuthToken{{Token: "t1", Role: "write"}, {Token: "t2", Role: "read"}}, c.Auth.Tokens)
				require.True(t, c.Auth.AnonymousRead)
			},
		},
		{
			name: "auth tokens from the environment replace the file's",
			file: "auth:\n  tokens:\n    - {token: t1, role: write}\n",
			env:  map[string]string{"BATON_AUTH_TOKENS": "read:a:b, write:c,"},
			check: func(t *testing.T, c *Config) {
				require.Equal(t, []AuthToken{{Token: "a:b", Role: "read"}, {Token: "c", Role: "write"}}, c.Auth.Tokens)
			},
		},
		{
			name: "a null value keeps the default",
			file: "lease:\n  ttl:\nauth:\n  tokens:\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, 5*time.Second, c.Lease.TTL)
				require.Empty(t, c.Auth.Tokens)
			},
		},
		{
			name: "log level and format are case-insensitive",
			file: "log:\n  level: DEBUG\n  format: Text\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "debug", c.Log.Level)
				require.Equal(t, "text", c.Log.Format)
			},
		},
		{
			name: "mongo seed lists and SRV",
			file: "mongo:\n  uri: mongodb://u:p@a:27017,b,c:27019/?replicaSet=rs0\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, "mongodb://u:p@a:27017,b,c:27019/?replicaSet=rs0", c.Mongo.URI)
			},
		},
		{
			name: "limits are inclusive where documented",
			file: "lease:\n  ttl: 4s\n  renew_interval: 2s\n  holder_ttl: 4s\ntoken:\n  rotate_interval: 29m59s\n  health_timeout: 1999ms\namqp:\n  reconnect_min: 1s\n  reconnect_max: 1s\nexecutor:\n  workers: 1\n  claim_batch: 1\n  claim_lead: 1s\n",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, 2*time.Second, c.Lease.RenewInterval)
				require.Equal(t, 1, c.Executor.Workers)
				require.Equal(t, time.Second, c.Executor.ClaimLead)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.env) == 0 {
				t.Parallel()
			}
			c, err := loadWith(t, tc.file, tc.env)
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		want    []string // each must appear in the error
		notWant string   // a secret that must not
	}{
		{name: "amqp url of another scheme", file: "amqp:\n  url: http://x\n",
			want: []string{`amqp.url: must be an amqp:// or amqps:// URL with a host, got "http://x"`}},
		{name: "unparsable amqp url", file: "amqp:\n  url: '::'\n", want: []string{"amqp.url: must be"}},
		{name: "amqp url without a host", file: "amqp:\n  url: 'amqp://:5672/'\n", want: []string{"amqp.url: must be"}},
		{name: "amqp password stays hidden", file: "amqp:\n  url: http://u:s3cret@x/\n",
			want: []string{`amqp.url: must be`, `u:xxxxx@x`}, notWant: "s3cret"},
		{name: "amqp url from the environment", env: map[string]string{"BATON_AMQP_URL": "redis://x"}, want: []string{"amqp.url: must be"}},
		{name: "mongo uri of another scheme", file: "mongo:\n  uri: postgres://u:s3cret@x\n",
			want: []string{"mongo.uri: must be a mongodb:// or mongodb+srv:// URI"}, notWant: "s3cret"},
		{name: "mongo uri with an empty host", file: "mongo:\n  uri: mongodb://a,,b/\n", want: []string{"mongo.uri: must be"}},
		{name: "mongo srv with a port", file: "mongo:\n  uri: mongodb+srv://db.example.com:27017/\n",
			want: []string{"mongo.uri: a mongodb+srv:// URI takes one host name without a port"}},
		{name: "negative duration", file: "lease:\n  ttl: -1s\n", want: []string{"lease.ttl: must be positive, got -1s"}},
		{name: "zero duration", file: "watchdog:\n  interval: 0s\n", want: []string{"watchdog.interval: must be positive, got 0s"}},
		{name: "negative duration from the environment", env: map[string]string{"BATON_RUNS_RETENTION": "-720h"},
			want: []string{"runs.retention: must be positive, got -720h0m0s"}},
		{name: "bad duration in the file", file: "watchdog:\n  interval: 5 parsecs\n",
			want: []string{`watchdog.interval: invalid duration "5 parsecs": use a number with a unit`}},
		{name: "bad duration in the environment", env: map[string]string{"BATON_LEASE_TTL": "5 parsecs"},
			want: []string{`lease.ttl: invalid duration "5 parsecs"`}},
		{name: "bad duration in the environment for a key absent from the file", file: "lease:\n  ttl: 8s\n",
			env: map[string]string{"BATON_CRUD_TIMEOUT": "soon"}, want: []string{`crud.timeout: invalid duration "soon"`}},
		{name: "duration without a unit", file: "lease:\n  ttl: 5\n",
			want: []string{"lease.ttl: invalid duration 5: a duration needs a unit, such as 5s"}},
		{name: "renewal slower than half the ttl", file: "lease:\n  ttl: 4s\n  renew_interval: 3s\n",
			want: []string{"lease.renew_interval: must be at most half of lease.ttl (4s), so that a failed renewal is retried before the lease expires, got 3s"}},
		{name: "holder ttl past the lease ttl", file: "lease:\n  ttl: 4s\n  holder_ttl: 5s\n",
			want: []string{"lease.holder_ttl: must be at most lease.ttl (4s)"}},
		{name: "holder ttl zero", file: "lease:\n  holder_ttl: 0s\n",
			want: []string{"lease.holder_ttl: must be positive, got 0s"}},
		{name: "health check as long as half the ttl", file: "lease:\n  ttl: 4s\n  renew_interval: 1s\ntoken:\n  health_timeout: 2s\n",
			want: []string{"token.health_timeout: must be less than half of lease.ttl (4s)"}},
		{name: "rotation past consumer_timeout", file: "token:\n  rotate_interval: 45m\n",
			want: []string{"token.rotate_interval: must be less than 30m, RabbitMQ's default consumer_timeout", "got 45m0s"}},
		{name: "rotation at consumer_timeout", env: map[string]string{"BATON_TOKEN_ROTATE_INTERVAL": "30m"},
			want: []string{"token.rotate_interval: must be less than 30m"}},
		{name: "reconnect max below min", file: "amqp:\n  reconnect_min: 2s\n  reconnect_max: 1s\n",
			want: []string{"amqp.reconnect_max: must be at least amqp.reconnect_min (2s), got 1s"}},
		{name: "unknown key", file: "leese:\n  ttl: 5s\n", want: []string{"leese: unknown key"}},
		{name: "unknown nested key", file: "lease:\n  tll: 5s\n", want: []string{"lease.tll: unknown key"}},
		{name: "unknown key in a token", file: "auth:\n  tokens:\n    - {token: x, roel: write}\n",
			want: []string{"auth.tokens[0].roel: unknown key"}},
		{name: "a section given a value", file: "lease: 5s\n", want: []string{"lease: "}},
		{name: "a string given a map", file: "schedule:\n  jobs: []\n", want: []string{"schedule: "}},
		{name: "bad log level", file: "log:\n  level: loud\n", want: []string{`log.level: must be debug, info, warn or error, got "loud"`}},
		{name: "bad log format", env: map[string]string{"BATON_LOG_FORMAT": "xml"}, want: []string{`log.format: must be json or text, got "xml"`}},
		{name: "bad cluster name", file: "cluster:\n  name: 'a b'\n", want: []string{`cluster.name: must match`}},
		{name: "cluster name from the environment", env: map[string]string{"BATON_CLUSTER_NAME": "-x"}, want: []string{`cluster.name: must match`}},
		{name: "cluster name that is no database name", file: "cluster:\n  name: pay.eu\n",
			want: []string{`mongo.database: must not contain any of`, "set it explicitly"}},
		{name: "bad listen address", file: "http:\n  listen: 8080\n", want: []string{`http.listen: must be host:port or :port, got "8080"`}},
		{name: "no workers", file: "executor:\n  workers: 0\n", want: []string{"executor.workers: must be at least 1, got 0"}},
		{name: "fractional workers", file: "executor:\n  workers: 1.5\n", want: []string{"executor.workers: must be a whole number, got 1.5"}},
		{name: "claim lead too long", file: "executor:\n  claim_lead: 2s\n", want: []string{"executor.claim_lead: must be between 0 and 1s", "got 2s"}},
		{name: "negative claim lead", env: map[string]string{"BATON_EXECUTOR_CLAIM_LEAD": "-1ms"}, want: []string{"executor.claim_lead: must be between 0 and 1s"}},
		{name: "claim batch from the environment", env: map[string]string{"BATON_EXECUTOR_CLAIM_BATCH": "many"},
			want: []string{`executor.claim_batch: cannot parse "many" as int`}},
		{name: "bad bool from the environment", env: map[string]string{"BATON_TARGETS_SHELL_ENABLED": "maybe"},
			want: []string{`targets.shell.enabled: cannot parse "maybe" as bool`}},
		{name: "bad auth role", file: "auth:\n  tokens:\n    - {token: s3cret, role: admin}\n",
			want: []string{`auth.tokens[0].role: must be read or write, got "admin"`}, notWant: "s3cret"},
		{name: "empty auth token", file: "auth:\n  tokens:\n    - {token: '', role: read}\n", want: []string{"auth.tokens[0].token: must not be empty"}},
		{name: "auth tokens from the environment without a role", env: map[string]string{"BATON_AUTH_TOKENS": "read:ok,s3cret"},
			want: []string{"auth.tokens: entry 1 has no colon"}, notWant: "s3cret"},
		{name: "every problem at once", file: "lease:\n  ttl: -1s\nlog:\n  level: loud\nleese: 1\n",
			want: []string{"leese: unknown key"}},
		{name: "every validation problem at once", file: "lease:\n  ttl: -1s\nlog:\n  level: loud\n",
			want: []string{"lease.ttl: must be positive", "log.level: must be"}},
		{name: "malformed yaml", file: "lease: [\n", want: []string{"config file "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.env) == 0 {
				t.Parallel()
			}
			_, err := loadWith(t, tc.file, tc.env)
			require.Error(t, err)
			for _, want := range tc.want {
				require.Contains(t, err.Error(), want)
			}
			if tc.notWant != "" {
				require.NotContains(t, err.Error(), tc.notWant)
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				require.NotContains(t, line, "decoding failed", "mapstructure's wording is rewritten")
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestRedacted(t *testing.T) {
	t.Parallel()

	tests := []struct{ in, want string }{
		{"amqp://user:s3cret@host:5672/", "amqp://user:xxxxx@host:5672/"},
		{"amqps://user:s3cret@host/vhost", "amqps://user:xxxxx@host/vhost"},
		{"mongodb://admin:s3cret@db:27017/?authSource=admin", "mongodb://admin:xxxxx@db:27017/?authSource=admin"},
		{"mongodb://admin:s3cret@a:27017,b/?replicaSet=rs0", "mongodb://admin:xxxxx@a:27017,b/?replicaSet=rs0"},
		{"mongodb://admin:s3:cr@et@a:27017,b/", "mongodb://admin:xxxxx@a:27017,b/"},
		{"mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017"},
		{"amqp://user@host/", "amqp://user@host/"},
		{"::", "::"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, RedactURL(tc.in), tc.in)
	}

	c := withComputed(t)
	c.AMQP.URL = "amqp://user:s3cret@host:5672/"
	c.Mongo.URI = "mongodb://admin:hunter2@db:27017/?authSource=admin"
	c.Auth.Tokens = []AuthToken{{Token: "tok1", Role: "write"}, {Token: "tok2", Role: "read"}}
	c.Auth.TokensFile = "/etc/baton/tokens"

	r := c.Redacted()
	require.Equal(t, "amqp://user:xxxxx@host:5672/", r.AMQP.URL)
	require.Equal(t, "mongodb://admin:xxxxx@db:27017/?authSource=admin", r.Mongo.URI)
	require.Equal(t, []AuthToken{{Token: "xxxxx", Role: "write"}, {Token: "xxxxx", Role: "read"}}, r.Auth.Tokens)
	require.Equal(t, "/etc/baton/tokens", r.Auth.TokensFile)
	require.NotContains(t, fmt.Sprintf("%+v", r), "s3cret")
	require.NotContains(t, fmt.Sprintf("%+v", r), "hunter2")
	require.NotContains(t, fmt.Sprintf("%+v", r), "tok1")

	require.Equal(t, "amqp://user:s3cret@host:5672/", c.AMQP.URL, "the original is untouched")
	require.Equal(t, "tok1", c.Auth.Tokens[0].Token, "the original is untouched")

	require.Equal(t, "amqp://guest:xxxxx@127.0.0.1:5672/", Default().Redacted().AMQP.URL)
}
