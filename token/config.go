package token

import (
	"cmp"
	"errors"
	"log/slog"
	"time"
)

// Config configures an Elector and a Watchdog. Zero durations take the
// defaults noted on each field.
type Config struct {
	// URL is the broker's AMQP URL.
	URL string
	// Queue is the token queue, "<cluster>.token".
	Queue string
	// InstanceID and Datacenter identify this instance in the lease.
	InstanceID string
	Datacenter string

	Heartbeat      time.Duration // AMQP heartbeat (5s)
	ConnectTimeout time.Duration // dial and channel setup (5s)
	ReconnectMin   time.Duration // first reconnect delay (100ms)
	ReconnectMax   time.Duration // reconnect delay cap (10s)

	// LeaseTTL is how long a lease lives without renewal (5s). A new holder
	// waits this long after it last saw the lease change.
	LeaseTTL time.Duration
	// RenewInterval is how often the executor renews (1s).
	RenewInterval time.Duration
	// HolderTTL bounds a crash takeover (1.2s, at most LeaseTTL). The
	// executor stops acting once the broker has not answered on the channel
	// that holds its token for this long; so a successor that receives the
	// token back from the broker, after the holder's channel died, waits
	// this long instead of LeaseTTL.
	HolderTTL time.Duration
	// HealthTimeout bounds the broker health check made before each renewal
	// (1s). A renewal proves the broker channel works, not only the store.
	HealthTimeout time.Duration
	// RotateInterval is how often the holder replaces its token with a fresh
	// one (10m), well inside the broker's 30-minute consumer_timeout.
	RotateInterval time.Duration
	// WatchdogInterval is how often every instance checks that the token
	// exists and the holder checks for duplicates (2s).
	WatchdogInterval time.Duration
	// StopTimeout bounds how long the leader may take to stop firing (5s).
	StopTimeout time.Duration
	// StuckAfter is how long a standby tolerates no live lease before it
	// subscribes to the token queue again (2 x LeaseTTL; a takeover needs
	// at most one). It clears consumers the broker left behind.
	StuckAfter time.Duration

	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	c.Heartbeat = cmp.Or(c.Heartbeat, 5*time.Second)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, 5*time.Second)
	c.ReconnectMin = cmp.Or(c.ReconnectMin, 100*time.Millisecond)
	c.ReconnectMax = cmp.Or(c.ReconnectMax, 10*time.Second)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, 5*time.Second)
	c.RenewInterval = cmp.Or(c.RenewInterval, time.Second)
	c.HealthTimeout = cmp.Or(c.HealthTimeout, time.Second)
	c.HolderTTL = min(cmp.Or(c.HolderTTL, 1200*time.Millisecond), c.LeaseTTL)
	c.RotateInterval = cmp.Or(c.RotateInterval, 10*time.Minute)
	c.WatchdogInterval = cmp.Or(c.WatchdogInterval, 2*time.Second)
	c.StopTimeout = cmp.Or(c.StopTimeout, 5*time.Second)
	c.StuckAfter = cmp.Or(c.StuckAfter, 2*c.LeaseTTL)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.URL == "":
		return errors.New("token: URL is required")
	case c.Queue == "":
		return errors.New("token: Queue is required")
	case c.InstanceID == "":
		return errors.New("token: InstanceID is required")
	case c.RenewInterval*2 > c.LeaseTTL:
		return errors.New("token: RenewInterval must be at most half of LeaseTTL")
	case c.HolderTTL < 0:
		return errors.New("token: HolderTTL must be positive")
	}
	return nil
}

// holderMargin is how much earlier than HolderTTL after the broker's last
// answer the executor stops acting; like safetyMargin, for the broker
// deadline.
func (c *Config) holderMargin() time.Duration {
	return min(c.safetyMargin(), c.HolderTTL/4)
}

// confirmInterval is how often the executor asks the broker to confirm the
// channel that holds its token: several times within the margin-reduced
// HolderTTL, so that one slow answer does not end the term.
func (c *Config) confirmInterval() time.Duration {
	return c.HolderTTL / 6
}

// safetyMargin is how much earlier than the TTL the holder gives up when it
// cannot renew. It absorbs scheduling delays and clock rate differences
// between the holder and the observer that will take over.
func (c *Config) safetyMargin() time.Duration {
	return max(c.RenewInterval/2, 250*time.Millisecond)
}
