package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// brokerConsumerTimeout is RabbitMQ's default consumer_timeout: the broker
// closes a channel whose delivery stays unacknowledged this long, and the
// executor's token is such a delivery.
const brokerConsumerTimeout = 30 * time.Minute

// maxClaimLead bounds executor.claim_lead: the ticks claimed ahead are the
// ones a crash leaves interrupted instead of caught up.
const maxClaimLead = time.Second

var clusterNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// Validate checks every value and reports every problem, one per line, each
// starting with its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	if !clusterNameRE.MatchString(c.Cluster.Name) {
		bad("cluster.name", "must match %s, got %q", clusterNameRE, c.Cluster.Name)
	}
	if strings.TrimSpace(c.Instance.ID) == "" {
		bad("instance.id", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen", "must be host:port or :port, got %q", c.HTTP.Listen)
	}
	if u, err := url.Parse(c.AMQP.URL); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Hostname() == "" {
		bad("amqp.url", "must be an amqp:// or amqps:// URL with a host, got %q", redactURL(c.AMQP.URL))
	}
	if err := checkMongoURI(c.Mongo.URI); err != nil {
		bad("mongo.uri", "%v, got %q", err, redactURL(c.Mongo.URI))
	}
	if err := checkDatabaseName(c.Mongo.Database); err != nil {
		bad("mongo.database", "%v, got %q (it defaults to cluster.name; set it explicitly if the cluster name is not a valid database name)", err, c.Mongo.Database)
	}

	for _, d := range []struct {
		key string
		val time.Duration
	}{
		{"http.shutdown_timeout", c.HTTP.ShutdownTimeout},
		{"amqp.heartbeat", c.AMQP.Heartbeat},
		{"amqp.connect_timeout", c.AMQP.ConnectTimeout},
		{"amqp.reconnect_min", c.AMQP.ReconnectMin},
		{"amqp.reconnect_max", c.AMQP.ReconnectMax},
		{"mongo.timeout", c.Mongo.Timeout},
		{"lease.ttl", c.Lease.TTL},
		{"lease.renew_interval", c.Lease.RenewInterval},
		{"lease.holder_ttl", c.Lease.HolderTTL},
		{"token.rotate_interval", c.Token.RotateInterval},
		{"token.health_timeout", c.Token.HealthTimeout},
		{"watchdog.interval", c.Watchdog.Interval},
		{"crud.timeout", c.CRUD.Timeout},
		{"runs.retention", c.Runs.Retention},
	} {
		if d.val <= 0 {
			bad(d.key, "must be positive, got %s", d.val)
		}
	}
	if c.AMQP.ReconnectMax < c.AMQP.ReconnectMin {
		bad("amqp.reconnect_max", "must be at least amqp.reconnect_min (%s), got %s", c.AMQP.ReconnectMin, c.AMQP.ReconnectMax)
	}
	if c.Lease.RenewInterval > 0 && c.Lease.TTL > 0 && c.Lease.RenewInterval > c.Lease.TTL/2 {
		bad("lease.renew_interval", "must be at most half of lease.ttl (%s), so that a failed renewal is retried before the lease expires, got %s",
			c.Lease.TTL, c.Lease.RenewInterval)
	}
	if c.Lease.HolderTTL > c.Lease.TTL && c.Lease.TTL > 0 {
		bad("lease.holder_ttl", "must be at most lease.ttl (%s): past it the lease bounds a takeover anyway, got %s",
			c.Lease.TTL, c.Lease.HolderTTL)
	}
	if c.Token.HealthTimeout > 0 && c.Lease.TTL > 0 && c.Token.HealthTimeout >= c.Lease.TTL/2 {
		bad("token.health_timeout", "must be less than half of lease.ttl (%s), because every renewal waits for this broker check first, got %s",
			c.Lease.TTL, c.Token.HealthTimeout)
	}
	if c.Token.RotateInterval >= brokerConsumerTimeout {
		bad("token.rotate_interval", "must be less than %s, RabbitMQ's default consumer_timeout: the broker closes a channel whose delivery stays unacknowledged that long, and the token is such a delivery, got %s",
			shortDuration(brokerConsumerTimeout), c.Token.RotateInterval)
	}

	if c.Executor.Workers < 1 {
		bad("executor.workers", "must be at least 1, got %d", c.Executor.Workers)
	}
	if c.Executor.ClaimBatch < 1 {
		bad("executor.claim_batch", "must be at least 1, got %d", c.Executor.ClaimBatch)
	}
	if c.Executor.ClaimLead < 0 || c.Executor.ClaimLead > maxClaimLead {
		bad("executor.claim_lead", "must be between 0 and %s: a tick claimed ahead is recorded as interrupted if its executor crashes before its time, got %s",
			shortDuration(maxClaimLead), c.Executor.ClaimLead)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "must be json or text, got %q", c.Log.Format)
	}
	for i, t := range c.Auth.Tokens {
		if strings.TrimSpace(t.Token) == "" {
			bad(fmt.Sprintf("auth.tokens[%d].token", i), "must not be empty")
		}
		if t.Role != "read" && t.Role != "write" {
			bad(fmt.Sprintf("auth.tokens[%d].role", i), "must be read or write, got %q", t.Role)
		}
	}
	return errors.Join(errs...)
}

// checkMongoURI checks the scheme and the hosts. It does not use url.Parse,
// which rejects valid seed lists such as mongodb://a:27017,b/.
func checkMongoURI(raw string) error {
	const want = "must be a mongodb:// or mongodb+srv:// URI with a host"
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || (scheme != "mongodb" && scheme != "mongodb+srv") {
		return errors.New(want)
	}
	hosts := rest
	if i := strings.IndexAny(hosts, "/?"); i >= 0 {
		hosts = hosts[:i]
	}
	if i := strings.LastIndex(hosts, "@"); i >= 0 {
		hosts = hosts[i+1:]
	}
	list := strings.Split(hosts, ",")
	for _, h := range list {
		if h == "" || strings.HasPrefix(h, ":") {
			return errors.New(want)
		}
	}
	if scheme == "mongodb+srv" && (len(list) != 1 || strings.Contains(list[0], ":")) {
		return errors.New("a mongodb+srv:// URI takes one host name without a port")
	}
	return nil
}

// checkDatabaseName applies MongoDB's rules for database names.
func checkDatabaseName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("must not be empty")
	case len(name) > 63:
		return errors.New("must be at most 63 bytes")
	case strings.ContainsAny(name, `/\. "$*<>:|?`):
		return errors.New(`must not contain any of /\. "$*<>:|?`)
	}
	return nil
}

// shortDuration formats whole minutes as "30m" rather than "30m0s".
func shortDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
