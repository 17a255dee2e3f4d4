package config

import (
	"net/url"
	"strings"
)

// redacted replaces a password or a token in output.
const redacted = "xxxxx"

// Redacted returns a copy that is safe to log or return from the API: the
// passwords in amqp.url and mongo.uri and the auth token values are replaced
// by "xxxxx". The receiver is not modified.
func (c *Config) Redacted() *Config {
	r := *c
	r.AMQP.URL = redactURL(c.AMQP.URL)
	r.Mongo.URI = redactURL(c.Mongo.URI)
	r.Auth.Tokens = make([]AuthToken, len(c.Auth.Tokens))
	for i, t := range c.Auth.Tokens {
		r.Auth.Tokens[i] = AuthToken{Token: redacted, Role: t.Role}
	}
	return &r
}

// RedactURL returns raw with the password of its user information replaced
// by "xxxxx", for logging a URL that is not part of a Config.
func RedactURL(raw string) string { return redactURL(raw) }

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
			return u.String()
		}
		if u.User != nil || !strings.Contains(raw, "@") {
			return raw
		}
	}
	// Unparsable (a MongoDB seed list, say): hide everything between the
	// scheme and the last "@". Hiding too much is safe; too little is not.
	i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@")
	if i < 0 || j < i {
		return raw
	}
	user, _, hasPassword := strings.Cut(raw[i+3:j], ":")
	if !hasPassword {
		return raw
	}
	return raw[:i+3] + user + ":" + redacted + raw[j:]
}
