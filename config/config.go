package config

import "time"

// Config is Baton's configuration. The mapstructure tag of each field is its
// key; every field documents its default, which [Default] fills.
type Config struct {
	Cluster  Cluster  `mapstructure:"cluster"`
	Instance Instance `mapstructure:"instance"`
	HTTP     HTTP     `mapstructure:"http"`
	AMQP     AMQP     `mapstructure:"amqp"`
	Mongo    Mongo    `mapstructure:"mongo"`
	Lease    Lease    `mapstructure:"lease"`
	Token    Token    `mapstructure:"token"`
	Watchdog Watchdog `mapstructure:"watchdog"`
	CRUD     CRUD     `mapstructure:"crud"`
	Executor Executor `mapstructure:"executor"`
	Runs     Runs     `mapstructure:"runs"`
	Targets  Targets  `mapstructure:"targets"`
	// Schedule is the path of a schedule file whose jobs are created or
	// updated at start. Default "" (none).
	Schedule string  `mapstructure:"schedule"`
	Log      Log     `mapstructure:"log"`
	Metrics  Metrics `mapstructure:"metrics"`
	Auth     Auth    `mapstructure:"auth"`
}

// Cluster names the cluster.
type Cluster struct {
	// Name prefixes the queues <name>.token and <name>.crud and is the
	// default database, so that two clusters never share state. It must
	// match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$. Default "baton".
	Name string `mapstructure:"name"`
}

// Instance identifies this process.
type Instance struct {
	// ID is unique per process. Default "": Load sets hostname-pid.
	ID string `mapstructure:"id"`
	// Datacenter is a free-text label shown in the API. Default "".
	Datacenter string `mapstructure:"datacenter"`
}

// HTTP configures the API, UI, metrics and health server.
type HTTP struct {
	// Listen is the address to bind, host:port or :port. Default ":8080".
	Listen string `mapstructure:"listen"`
	// ShutdownTimeout bounds how long a shutdown waits for requests in
	// flight. Default 10s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
}

// AMQP configures the RabbitMQ connection.
type AMQP struct {
	// URL is an amqp:// or amqps:// URL with a host.
	// Default "amqp://guest:guest@127.0.0.1:5672/".
	URL string `mapstructure:"url"`
	// Heartbeat is the AMQP heartbeat interval. Default 5s.
	Heartbeat time.Duration `mapstructure:"heartbeat"`
	// ConnectTimeout bounds each dial. Default 5s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// ReconnectMin is the first reconnect backoff. Default 100ms.
	ReconnectMin time.Duration `mapstructure:"reconnect_min"`
	// ReconnectMax caps the reconnect backoff; at least ReconnectMin.
	// Default 10s.
	ReconnectMax time.Duration `mapstructure:"reconnect_max"`
}

// Mongo configures the store.
type Mongo struct {
	// URI is a mongodb:// or mongodb+srv:// URI.
	// Default "mongodb://127.0.0.1:27017".
	URI string `mapstructure:"uri"`
	// Database is the database name. Default "": Load sets Cluster.Name.
	Database string `mapstructure:"database"`
	// Timeout bounds each store operation. Default 5s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Lease configures the executor's lease in the store.
type Lease struct {
	// TTL is how long an unrenewed lease stays valid; a successor waits this
	// long after a crash. Default 5s.
	TTL time.Duration `mapstructure:"ttl"`
	// RenewInterval is how often the executor renews; at most TTL/2.
	// Default 1s.
	RenewInterval time.Duration `mapstructure:"renew_interval"`
	// HolderTTL is how long the executor keeps acting without an answer
	// from the broker on its token's channel; a successor that gets the
	// token back from a crashed executor waits this long instead of TTL.
	// At most TTL. Default 1.2s.
	HolderTTL time.Duration `mapstructure:"holder_ttl"`
}

// Token configures the RabbitMQ token the executor holds.
type Token struct {
	// RotateInterval is how often the executor swaps its token for a fresh
	// one; below RabbitMQ's default 30m consumer_timeout. Default 10m.
	RotateInterval time.Duration `mapstructure:"rotate_interval"`
	// HealthTimeout bounds the broker health check before each renewal;
	// below Lease.TTL/2. Default 1s.
	HealthTimeout time.Duration `mapstructure:"health_timeout"`
}

// Watchdog configures the check that exactly one token exists.
type Watchdog struct {
	// Interval is how often every instance checks. Default 2s.
	Interval time.Duration `mapstructure:"interval"`
}

// CRUD configures writes forwarded to the executor.
type CRUD struct {
	// Timeout is how long a forwarded write may wait for the executor.
	// Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Executor configures dispatch.
type Executor struct {
	// Workers is the dispatch concurrency, at least 1. Default 256.
	Workers int `mapstructure:"workers"`
	// ClaimBatch is the number of ticks claimed per store call, at least 1.
	// Default 4000.
	ClaimBatch int `mapstructure:"claim_batch"`
	// ClaimLead is how long before its time a tick is claimed, so that
	// the store's work is done when it fires; 0 to 1s. Default 200ms.
	ClaimLead time.Duration `mapstructure:"claim_lead"`
}

// Runs configures run records.
type Runs struct {
	// Retention is how long run records are kept. Default 720h (30 days).
	Retention time.Duration `mapstructure:"retention"`
}

// Targets configures the kinds of job target.
type Targets struct {
	Shell ShellTarget `mapstructure:"shell"`
}

// ShellTarget configures shell targets, which run commands on the
// executor's machine.
type ShellTarget struct {
	// Enabled allows shell targets. Default false.
	Enabled bool `mapstructure:"enabled"`
}

// Log configures the service logger.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `mapstructure:"level"`
	// Format is json or text. Default "json".
	Format string `mapstructure:"format"`
}

// Metrics configures Prometheus metrics.
type Metrics struct {
	// PerJob adds series labelled by job, one per job. Default false.
	PerJob bool `mapstructure:"per_job"`
}

// Auth configures API authentication.
type Auth struct {
	// Tokens are bearer tokens with their roles. Default none. Its
	// environment variable takes the string form "write:tok1,read:tok2".
	Tokens []AuthToken `mapstructure:"tokens"`
	// TokensFile is the path of a file of hashed tokens. Default "" (none).
	TokensFile string `mapstructure:"tokens_file"`
	// AnonymousRead allows reads (GET under /api/ and /metrics) without a
	// token. Default false.
	AnonymousRead bool `mapstructure:"anonymous_read"`
	// AllowInsecureRemote keeps an http.listen without a host (":8080") on
	// every interface even when no token is configured. Without it such an
	// address binds to 127.0.0.1, so that an unauthenticated API is never
	// exposed by accident. Default false.
	AllowInsecureRemote bool `mapstructure:"allow_insecure_remote"`
}

// AuthToken is a bearer token and its role.
type AuthToken struct {
	// Token is the secret; not empty.
	Token string `mapstructure:"token"`
	// Role is read or write.
	Role string `mapstructure:"role"`
}

// Default returns a configuration with every default. The two computed
// defaults, Instance.ID and Mongo.Database, are left empty: [Load] fills
// them after the file and the environment are applied.
func Default() *Config {
	return &Config{
		Cluster: Cluster{Name: "baton"},
		HTTP:    HTTP{Listen: ":8080", ShutdownTimeout: 10 * time.Second},
		AMQP: AMQP{
			URL:            "amqp://guest:guest@127.0.0.1:5672/",
			Heartbeat:      5 * time.Second,
			ConnectTimeout: 5 * time.Second,
			ReconnectMin:   100 * time.Millisecond,
			ReconnectMax:   10 * time.Second,
		},
		Mongo:    Mongo{URI: "mongodb://127.0.0.1:27017", Timeout: 5 * time.Second},
		Lease:    Lease{TTL: 5 * time.Second, RenewInterval: time.Second, HolderTTL: 1200 * time.Millisecond},
		Token:    Token{RotateInterval: 10 * time.Minute, HealthTimeout: time.Second},
		Watchdog: Watchdog{Interval: 2 * time.Second},
		CRUD:     CRUD{Timeout: 10 * time.Second},
		Executor: Executor{Workers: 256, ClaimBatch: 4000, ClaimLead: 200 * time.Millisecond},
		Runs:     Runs{Retention: 30 * 24 * time.Hour},
		Log:      Log{Level: "info", Format: "json"},
		Auth:     Auth{Tokens: []AuthToken{}},
	}
}
