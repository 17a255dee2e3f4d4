package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// envPrefix starts the environment variable of every key.
const envPrefix = "BATON"

// Load reads the YAML file at path ("" for none; a missing file is an
// error), applies the BATON_* environment variables over it, fills the
// computed defaults and validates. See the package documentation.
func Load(path string) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	// AutomaticEnv only consults the environment for keys viper knows of, so
	// every key gets a default, including those whose default is empty.
	for key, val := range keys(Default()) {
		v.SetDefault(key, val)
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		err = v.ReadConfig(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	c := &Config{}
	err := v.Unmarshal(c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true // a misspelt key is an error, not a silent default
		dc.DecodeHook = decodeHook
	})
	if err != nil {
		return nil, decodeError(err)
	}
	c.fillComputed()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// fillComputed fills the defaults that depend on other values or on the
// process, after the file and the environment are applied.
func (c *Config) fillComputed() {
	if c.Instance.ID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "baton"
		}
		c.Instance.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.Mongo.Database == "" {
		c.Mongo.Database = c.Cluster.Name
	}
	c.Log.Level = strings.ToLower(c.Log.Level)
	c.Log.Format = strings.ToLower(c.Log.Format)
}

// keys lists every key of c with its value, by walking the mapstructure tags.
func keys(c *Config) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			key := t.Field(i).Tag.Get("mapstructure")
			if prefix != "" {
				key = prefix + "." + key
			}
			if f := v.Field(i); f.Kind() == reflect.Struct {
				walk(key, f)
			} else {
				out[key] = f.Interface()
			}
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	return out
}

var (
	durationType   = reflect.TypeFor[time.Duration]()
	authTokensType = reflect.TypeFor[[]AuthToken]()
)

// decodeHook converts the values viper collects (YAML scalars, environment
// strings, defaults) to the field types, with messages that say how to fix
// them; mapstructure prefixes the key.
func decodeHook(from, to reflect.Type, data any) (any, error) {
	switch {
	case to == durationType:
		switch d := data.(type) {
		case time.Duration:
			return d, nil
		case string:
			parsed, err := time.ParseDuration(strings.TrimSpace(d))
			if err != nil {
				return nil, fmt.Errorf("invalid duration %q: use a number with a unit, such as 500ms, 5s, 10m or 720h", d)
			}
			return parsed, nil
		case int, int64, uint64, float64:
			// YAML gives a bare number; reading it as nanoseconds would turn
			// "ttl: 5" into 5ns.
			return nil, fmt.Errorf("invalid duration %v: a duration needs a unit, such as %vs", d, d)
		}
	case to == authTokensType && from.Kind() == reflect.String:
		return parseAuthTokens(data.(string))
	case to.Kind() == reflect.Int:
		if f, ok := data.(float64); ok && f != math.Trunc(f) {
			return nil, fmt.Errorf("must be a whole number, got %v", f)
		}
	}
	return data, nil
}

// parseAuthTokens reads the string form of auth.tokens,
// "write:tok1,read:tok2". Its errors never quote a token.
func parseAuthTokens(s string) ([]AuthToken, error) {
	tokens := []AuthToken{}
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		role, token, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("entry %d has no colon: the string form is role:token,role:token, such as write:tok1,read:tok2", i)
		}
		tokens = append(tokens, AuthToken{Token: token, Role: strings.TrimSpace(role)})
	}
	return tokens, nil
}

// decodeError rewrites mapstructure's error tree as one line per problem,
// each starting with its key.
func decodeError(err error) error {
	var lines []error
	for _, de := range decodeErrors(err) {
		key, inner := de.Name(), de.Unwrap()
		var parseErr *mapstructure.ParseError
		var typeErr *mapstructure.UnconvertibleTypeError
		switch {
		case strings.HasPrefix(inner.Error(), "has invalid keys: "):
			for k := range strings.SplitSeq(strings.TrimPrefix(inner.Error(), "has invalid keys: "), ", ") {
				if key != "" {
					k = key + "." + k
				}
				lines = append(lines, fmt.Errorf("%s: unknown key (config.yaml lists every key)", k))
			}
		case errors.As(inner, &parseErr):
			lines = append(lines, fmt.Errorf("%s: cannot parse %s as %s", key, strconv.Quote(fmt.Sprint(parseErr.Value)), parseErr.Expected.Type()))
		case errors.As(inner, &typeErr):
			lines = append(lines, fmt.Errorf("%s: expected %s, got %T", key, typeErr.Expected.Type(), typeErr.Value))
		default:
			lines = append(lines, fmt.Errorf("%s: %w", key, inner))
		}
	}
	if len(lines) == 0 {
		return fmt.Errorf("config: %w", err)
	}
	// mapstructure walks maps in random order; sort for a stable message.
	slices.SortFunc(lines, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(lines...)
}

// decodeErrors returns the innermost mapstructure.DecodeErrors of err's tree:
// those that carry the full key of a value.
func decodeErrors(err error) []*mapstructure.DecodeError {
	switch e := err.(type) {
	case nil:
		return nil
	case *mapstructure.DecodeError:
		if inner := decodeErrors(e.Unwrap()); len(inner) > 0 {
			return inner
		}
		return []*mapstructure.DecodeError{e}
	case interface{ Unwrap() []error }:
		var out []*mapstructure.DecodeError
		for _, inner := range e.Unwrap() {
			out = append(out, decodeErrors(inner)...)
		}
		return out
	case interface{ Unwrap() error }:
		return decodeErrors(e.Unwrap())
	}
	return nil
}
