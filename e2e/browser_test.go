package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testcluster"
)

// chromiumPath finds the browser. The test fails, never skips, without one:
// CI installs Debian's chromium package (.ci/run).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BATON_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium found: install it with `apt-get install -y chromium` (or set BATON_CHROMIUM); the browser test does not skip")
	return ""
}

// screenshotDir is $BATON_SCREENSHOTS, or a new temporary directory that is
// kept after the test so that the screenshots can be collected.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BATON_SCREENSHOTS")
	if dir == "" {
		var err error
		dir, err = os.MkdirTemp("", "baton-screenshots-")
		require.NoError(t, err)
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	t.Logf("screenshots in %s", dir)
	return dir
}

// browser drives one headless Chromium tab.
type browser struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	n     int
	began time.Time
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// Start the browser now, so that a broken install fails here, clearly.
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return &browser{t: t, ctx: ctx, dir: screenshotDir(t), began: time.Now()}
}

// run runs actions with a deadline.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...), what)
}

// waitJS waits until a JavaScript expression is true.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
			flash, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.getElementById("flash")?.innerText || ""`))
			b.t.Fatalf("timed out after %s waiting for %s (%s); err=%v; flash=%q", timeout, what, expr, err, flash)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eval runs a JavaScript statement.
func (b *browser) eval(js string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool]("("+js+", true)"))
	require.NoError(b.t, err, js)
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(b.t, err, "text of %s", sel)
	return s
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	b.n++
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name))
	require.NoError(b.t, os.WriteFile(path, png, 0o644))
	b.t.Logf("%6.1fs  %s", time.Since(b.began).Seconds(), filepath.Base(path))
}

// login opens the node's cluster page, which asks for a token, and signs in
// through the login form (the token is kept per origin, in sessionStorage).
func (b *browser) login(n *testcluster.Node, token string) {
	b.t.Helper()
	b.run("open "+n.ID, chromedp.Navigate("http://"+n.HTTP+"/"))
	b.waitJS("the login form on "+n.ID, `document.getElementById("login").open`, 10*time.Second)
	b.run("sign in on "+n.ID,
		chromedp.SendKeys(chromedp.ID("login-token"), token),
		chromedp.Click(chromedp.ID("login-submit")))
	b.waitJS("the cluster page on "+n.ID, `document.querySelectorAll("#instances tbody tr").length > 0`, 10*time.Second)
}

// TestBrowser drives the web UI in headless Chromium against a real
// two-instance cluster with authentication on: sign in, create a job in the
// form with the live preview, see it fire on the runs page, pause it from
// the standby's UI, see a write fail with no_executor while the executor is
// frozen, and see the executor change on the cluster page after the
// executor is stopped.
func TestBrowser(t *testing.T) {
	// Not parallel: Chromium is heavy on a two-core machine, and the other
	// e2e tests measure timing. A sequential test runs before the parallel
	// ones are released, so it neither slows them nor is slowed by them.
	began := time.Now()
	const writeTok = "browser-write-31c9"
	// The default lease timings rather than the fast ones: Chromium and
	// two race-built instances on a small machine can stall a renewal long
	// enough to move leadership mid-test. The test also asks who leads
	// before each step that depends on it, rather than once.
	e := startWithToken(t, 2, map[string]string{
		"BATON_AUTH_TOKENS":          "write:" + writeTok,
		"BATON_LEASE_TTL":            "5s",
		"BATON_LEASE_RENEW_INTERVAL": "1s",
		"BATON_TOKEN_HEALTH_TIMEOUT": "1s",
	}, writeTok)
	e.executor(t)
	first, second := e.c.Nodes[0], e.c.Nodes[1]
	b := newBrowser(t)

	// Sign in on both instances (the token is kept per origin), and see
	// both instances and the executor on the cluster page.
	b.login(second, writeTok)
	// A wrong token is refused in the form, which asks again.
	b.run("open "+first.ID, chromedp.Navigate("http://"+first.HTTP+"/"))
	b.waitJS("the login form on "+first.ID, `document.getElementById("login").open`, 10*time.Second)
	b.run("sign in with a wrong token",
		chromedp.SendKeys(chromedp.ID("login-token"), "not-the-token"),
		chromedp.Click(chromedp.ID("login-submit")))
	b.waitJS("the token to be refused", `document.getElementById("login").open && document.getElementById("login-error").textContent.includes("not accepted")`, 10*time.Second)
	b.screenshot("login-refused")
	b.run("sign in",
		chromedp.SendKeys(chromedp.ID("login-token"), writeTok),
		chromedp.Click(chromedp.ID("login-submit")))
	b.waitJS("the executor on the cluster page",
		`["i1", "i2"].includes(document.getElementById("executor-instance").textContent) && document.querySelectorAll("#instances tbody tr").length === 2`,
		10*time.Second)
	b.screenshot("cluster")

	// Job form: the live preview rejects a bad schedule, then shows the
	// next five fire times of a good one as it is typed.
	b.run("open the job form", chromedp.Navigate("http://"+first.HTTP+"/jobs/new"))
	b.run("type a bad schedule",
		chromedp.WaitVisible(chromedp.ID("f-schedule")),
		chromedp.SendKeys(chromedp.ID("f-name"), "browser-job"),
		chromedp.SendKeys(chromedp.ID("f-schedule"), "61 * * * *"))
	b.waitJS("the preview to reject the schedule", `document.getElementById("preview").classList.contains("bad") && document.getElementById("f-schedule").classList.contains("invalid")`, 10*time.Second)
	b.screenshot("job-form-invalid")
	b.eval(`document.getElementById("f-schedule").value = ""`)
	b.run("type a good schedule",
		chromedp.SendKeys(chromedp.ID("f-schedule"), "*/2 * * * * *"),
		chromedp.SendKeys(chromedp.ID("f-http-url"), e.recv.URL("/browser")),
		chromedp.SendKeys(chromedp.ID("f-labels"), "team=ui"))
	b.waitJS("five fire times in the preview", `document.querySelectorAll("#preview-next li").length === 5 && document.getElementById("preview").classList.contains("ok")`, 10*time.Second)
	desc := b.text("#preview-description")
	require.Contains(t, strings.ToLower(desc), "second", "the description says how often: %q", desc)
	b.screenshot("job-form-preview")

	// Save: the page moves to the job's runs, which refresh until a
	// scheduled run has succeeded.
	b.run("save", chromedp.Click(chromedp.ID("save")))
	b.waitJS("the runs page", `location.pathname === "/jobs/browser-job/runs"`, 15*time.Second)
	b.waitJS("a succeeded scheduled run", `[...document.querySelectorAll("#runs tbody tr[data-status=succeeded]")].some(tr => tr.textContent.includes("schedule"))`, 20*time.Second)
	require.NotEmpty(t, e.recv.Tally()["browser-job"], "the receiver got the fire")
	b.screenshot("runs")

	// Jobs page on the standby: filter by label, pause the job.
	exec_, _ := e.executor(t)
	standby := e.standby(t, exec_)
	b.run("open the standby's jobs page", chromedp.Navigate("http://"+standby.HTTP+"/jobs?label=team%3Dui"))
	row := `#jobs tr[data-job="browser-job"]`
	b.waitJS("the job's row", `document.querySelector('`+row+` .act-pause') !== null`, 10*time.Second)
	b.waitJS("the page to name the instance serving it", fmt.Sprintf(`document.getElementById("served-by").textContent === %q`, standby.ID), 10*time.Second)
	b.run("pause from the standby", chromedp.Click(chromedp.CSS(row+" .act-pause")))
	b.waitJS("the job to show as paused", `document.querySelector('`+row+` .act-resume') !== null && document.querySelector('`+row+`').textContent.includes("paused")`, 15*time.Second)
	var j struct{ Paused bool }
	code, err := standby.Do(http.MethodGet, "/api/v1/jobs/browser-job", nil, &j)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.True(t, j.Paused, "the pause made on the standby's UI was applied by the executor")
	b.screenshot("jobs-paused")

	// Edit on the standby: the form is filled from the API, and a save
	// replaces the job (PUT) through the forwarded write path.
	b.run("open the edit form", chromedp.Navigate("http://"+standby.HTTP+"/jobs/browser-job/edit"))
	b.waitJS("the form filled from the job", `document.getElementById("f-schedule").value === "*/2 * * * * *" && document.getElementById("f-name").readOnly && document.getElementById("f-paused").checked && document.querySelectorAll("#preview-next li").length === 5`, 10*time.Second)
	b.run("edit the description and save",
		chromedp.SendKeys(chromedp.ID("f-description"), "edited in the browser"),
		chromedp.Click(chromedp.ID("save")))
	b.waitJS("the runs page after the edit", `location.pathname === "/jobs/browser-job/runs"`, 15*time.Second)
	var edited struct {
		Description string
		Paused      bool
		Labels      map[string]string
	}
	_, err = standby.Do(http.MethodGet, "/api/v1/jobs/browser-job", nil, &edited)
	require.NoError(t, err)
	require.Equal(t, "edited in the browser", edited.Description)
	require.True(t, edited.Paused, "the edit kept the job paused")
	require.Equal(t, map[string]string{"team": "ui"}, edited.Labels)

	// Failed runs across all jobs.
	e.create(t, standby, jobBody("always-fails", "* * * * * *", e.recv.URL("/fail/1000")))
	b.run("open failed runs", chromedp.Navigate("http://"+standby.HTTP+"/runs?status=failed"))
	b.waitJS("a failed run of always-fails", `[...document.querySelectorAll("#runs tbody tr[data-status=failed]")].some(tr => tr.textContent.includes("always-fails"))`, 20*time.Second)
	b.screenshot("failed-runs")

	// Delete asks for confirmation in a dialog first.
	failing := `#jobs tr[data-job="always-fails"]`
	b.run("open the jobs page", chromedp.Navigate("http://"+standby.HTTP+"/jobs"))
	b.waitJS("the failing job's row", `document.querySelector('`+failing+` .act-delete') !== null`, 10*time.Second)
	b.run("delete", chromedp.Click(chromedp.CSS(failing+" .act-delete")))
	b.waitJS("the confirmation dialog", `document.getElementById("confirm").open`, 5*time.Second)
	b.screenshot("delete-confirm")
	b.run("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	b.waitJS("the row to go", `document.querySelector('`+failing+`') === null && document.querySelector('`+row+`') !== null`, 15*time.Second)
	code, err = standby.Do(http.MethodGet, "/api/v1/jobs/always-fails", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code)

	// With the executor frozen, a write from the standby's UI fails with
	// 503 no_executor, and the page says so.
	exec_, _ = e.executor(t)
	standby = e.standby(t, exec_)
	b.run("open the standby's jobs page", chromedp.Navigate("http://"+standby.HTTP+"/jobs"))
	b.waitJS("the job's row", `document.querySelector('`+row+` .act-trigger') !== null`, 10*time.Second)
	exec_.Freeze()
	b.run("run now while the executor is frozen", chromedp.Click(chromedp.CSS(row+" .act-trigger")))
	b.waitJS("the no_executor message", `!document.getElementById("flash").hidden && document.getElementById("flash").textContent.includes("no executor")`, 15*time.Second)
	b.screenshot("no-executor")

	// Stop the executor; the standby's cluster page shows it taking over.
	exec_.Kill()
	b.run("open the standby's cluster page", chromedp.Navigate("http://"+standby.HTTP+"/"))
	b.waitJS("the standby as executor", fmt.Sprintf(`document.getElementById("executor-instance").textContent === %q`, standby.ID), 30*time.Second)
	b.waitJS("the old executor shown as not seen", fmt.Sprintf(`document.querySelector('#instances tr[data-id=%q]').dataset.role === "stale"`, exec_.ID), 15*time.Second)
	b.screenshot("cluster-after-failover")
	t.Logf("browser test took %s", time.Since(began).Round(time.Millisecond))
}
