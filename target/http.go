package target

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/batonhq/baton/job"
)

// HTTP transport tuning. There is deliberately no client or response-header
// timeout: each attempt's context carries the job's timeout.
const (
	httpDialTimeout  = 10 * time.Second
	httpTLSTimeout   = 10 * time.Second
	httpIdleTimeout  = 90 * time.Second
	httpDrainLimit   = 64 << 10 // response bytes read so a connection can be reused
	httpErrorPreview = 512      // bytes of a failing response quoted in the error
	httpUserAgent    = "baton"
	// idleConnsFactor times MaxConnsPerHost is the idle connections kept
	// across all hosts.
	idleConnsFactor = 16
)

// httpSender sends one request per attempt through one shared client, so
// that every job to the same host reuses the same kept-alive connections.
type httpSender struct {
	client    *http.Client
	transport *http.Transport
}

func newHTTPSender(maxConnsPerHost int) *httpSender {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: httpDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          idleConnsFactor * maxConnsPerHost,
		MaxIdleConnsPerHost:   maxConnsPerHost, // the default 2 would close most connections of a burst
		MaxConnsPerHost:       maxConnsPerHost,
		IdleConnTimeout:       httpIdleTimeout,
		TLSHandshakeTimeout:   httpTLSTimeout,
		ExpectContinueTimeout: time.Second,
		// Bodies are drained, never read: asking for gzip would only cost a
		// decompressor per response.
		DisableCompression: true,
	}
	client := &http.Client{
		Transport: tr,
		// Redirects are not followed: a 3xx is the outcome (a failure unless
		// listed in success_codes). Following would turn a POST into a GET
		// and could carry secret headers to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &httpSender{client: client, transport: tr}
}

func (h *httpSender) close() { h.transport.CloseIdleConnections() }

func (h *httpSender) send(ctx context.Context, f *Fire, attempt int, allow func() error) outcome {
	t := f.Job.Target.HTTP
	if t == nil || t.URL == "" {
		return failure(errors.New("target: the http target has no url"))
	}
	var body io.Reader
	if t.Body != "" {
		body = strings.NewReader(t.Body)
	}
	req, err := http.NewRequestWithContext(ctx, cmp.Or(t.Method, job.DefaultHTTPMethod), t.URL, body)
	if err != nil {
		return failure(fmt.Errorf("target: build the request: %w", err))
	}
	setHeaders(req, t.Headers, f, attempt)
	if err := allow(); err != nil {
		return outcome{refused: err}
	}
	resp, err := h.client.Do(req) // the error names the URL without its password
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	out := outcome{httpStatus: resp.StatusCode}
	if !success(resp.StatusCode, t.SuccessCodes) {
		out.err = statusError(resp)
	}
	// Drain what is left, within a bound, so the connection goes back to
	// the pool; a larger body costs the connection instead.
	_, _ = io.CopyN(io.Discard, resp.Body, httpDrainLimit)
	return out
}

// setHeaders replaces req's headers with the job's and the fire's
// identification. The map is sized once and every value shares one backing
// array; the identification keys are canonical already.
func setHeaders(req *http.Request, headers map[string]string, f *Fire, attempt int) {
	id := identify(f, attempt)
	n := len(headers) + len(id) + 1
	vals := make([]string, 0, n)
	hdr := make(http.Header, n)
	set := func(k, v string) {
		vals = append(vals, v)
		hdr[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for k, v := range headers {
		switch k = textproto.CanonicalMIMEHeaderKey(k); k {
		case "Host":
			req.Host = v // the transport ignores a Host header
		case "Content-Length":
			// Set by the transport from the body.
		default:
			set(k, v)
		}
	}
	if _, ok := hdr["User-Agent"]; !ok {
		set("User-Agent", httpUserAgent)
	}
	// Last, so that a job's headers cannot spoof them.
	for _, kv := range id {
		set(kv.header, kv.value)
	}
	req.Header = hdr
}

// success reports whether code counts as success: listed in codes, or 2xx
// when codes is empty.
func success(code int, codes []int) bool {
	if len(codes) == 0 {
		return code >= 200 && code < 300
	}
	return slices.Contains(codes, code)
}

// statusError describes a failing response, quoting the start of its body:
// receivers often say there what went wrong.
func statusError(resp *http.Response) error {
	buf := make([]byte, httpErrorPreview)
	n, _ := io.ReadFull(resp.Body, buf)
	preview := buf[:n]
	if n == len(buf) {
		preview = trimPartialRune(preview)
	}
	msg := strings.TrimSpace(strings.ToValidUTF8(string(preview), "\uFFFD"))
	if msg == "" {
		return fmt.Errorf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if n == len(buf) {
		msg += " …"
	}
	return fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, http.StatusText(resp.StatusCode), msg)
}
