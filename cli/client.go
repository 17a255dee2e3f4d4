package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton/job"
)

// apiClient calls one instance's HTTP API. Any instance will do: writes
// from a standby are forwarded to the executor.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// APIError is an error answered by the API, with its HTTP status and code.
type APIError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *APIError) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (%s, HTTP %d)", msg, e.Code, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// clientFlags are the flags every API subcommand shares.
type clientFlags struct {
	server  string
	token   string
	timeout time.Duration
	output  string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", "", "instance to talk to (default $BATON_SERVER or http://127.0.0.1:8080)")
	pf.StringVar(&f.token, "token", "", "API bearer token (default $BATON_TOKEN)")
	pf.DurationVar(&f.timeout, "timeout", 30*time.Second, "timeout of each API call")
	pf.StringVarP(&f.output, "output", "o", "table", "output format: table, json or yaml")
}

func (f *clientFlags) client() (*apiClient, error) {
	server := f.server
	if server == "" {
		server = os.Getenv("BATON_SERVER")
	}
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	if _, err := url.Parse(server); err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	switch f.output {
	case "table", "json", "yaml":
	default:
		return nil, fmt.Errorf("-o %q: want table, json or yaml", f.output)
	}
	token := f.token
	if token == "" {
		token = os.Getenv("BATON_TOKEN")
	}
	return &apiClient{base: strings.TrimRight(server, "/"), token: token, http: &http.Client{Timeout: f.timeout}}, nil
}

// do sends a request with a JSON body (if any) and decodes a JSON answer
// into out (if not nil). An API error comes back as *APIError.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message, Field string } `json:"error"`
		}
		apiErr := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			apiErr.Code, apiErr.Message, apiErr.Field = e.Error.Code, e.Error.Message, e.Error.Field
		} else {
			apiErr.Message = strings.TrimSpace(string(data))
			if apiErr.Message == "" {
				apiErr.Message = http.StatusText(resp.StatusCode)
			}
		}
		return apiErr
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func (c *apiClient) jobs(ctx context.Context, query url.Values) ([]job.Job, error) {
	all := []job.Job{}
	for {
		var page struct {
			Jobs      []job.Job `json:"jobs"`
			NextAfter string    `json:"next_after"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/jobs?"+query.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Jobs...)
		if page.NextAfter == "" || len(page.Jobs) == 0 {
			return all, nil
		}
		query.Set("after", page.NextAfter)
	}
}

func (c *apiClient) job(ctx context.Context, name string) (*job.Job, error) {
	var j job.Job
	if err := c.do(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(name), nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// isNotFound reports whether err is the API's 404.
func isNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
