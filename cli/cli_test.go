package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/batonhq/baton/internal/testcluster"
	"github.com/batonhq/baton/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// cluster starts two real instances and returns the standby's and the
// executor's addresses: the CLI is pointed at the standby, so every write
// it makes is forwarded.
func cluster(t *testing.T) (standby, executor string) {
	t.Helper()
	name := testenv.Name(t)
	testenv.DeleteQueues(t, name+".token", name+".crud")
	c, err := testcluster.New(testcluster.Options{Name: name, MongoURI: testenv.MongoURI(t), AMQPURL: testenv.AMQPURL(t),
		Env: map[string]string{"BATON_LEASE_TTL": "3s", "BATON_LEASE_RENEW_INTERVAL": "500ms", "BATON_WATCHDOG_INTERVAL": "1s"}})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	for _, id := range []string{"c1", "c2"} {
		_, err := c.Add(id, "dc-"+id)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec, _, err := c.WaitExecutor(ctx)
	require.NoError(t, err)
	for _, n := range c.Nodes {
		if n != exec {
			return n.HTTP, exec.HTTP
		}
	}
	t.Fatal("no standby")
	return "", ""
}

// baton runs the command line in-process and returns its output, its
// error output and whether it failed.
func baton(t *testing.T, server string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out, &errOut)
	root.SetArgs(append(args, "--server", server))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

const scheduleFile = `
jobs:
  - name: report
    schedule: "0 2 * * *"
    timezone: Europe/Berlin
    labels: {team: data}
    target: {type: http, http: {url: "http://127.0.0.1:1/report"}}
  - name: cleanup
    schedule: "*/10 * * * *"
    target: {type: http, http: {url: "http://127.0.0.1:1/cleanup"}}
`

func TestCLIAgainstARunningCluster(t *testing.T) {
	t.Parallel()
	server, _ := cluster(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "jobs.yaml")
	require.NoError(t, os.WriteFile(file, []byte(scheduleFile), 0o600))

	// A dry run shows the plan and changes nothing.
	out, _, err := baton(t, server, "jobs", "apply", "-f", file, "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "create    report")
	require.Contains(t, out, "create    cleanup")
	out, _, err = baton(t, server, "jobs", "list", "-o", "json")
	require.NoError(t, err)
	var list struct{ Jobs []map[string]any }
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Empty(t, list.Jobs, "--dry-run changed nothing")

	out, _, err = baton(t, server, "jobs", "apply", "-f", file)
	require.NoError(t, err)
	require.Contains(t, out, "applied 2 changes")

	// Applying again changes nothing; an edit is an update; --prune deletes.
	out, _, err = baton(t, server, "jobs", "apply", "-f", file)
	require.NoError(t, err)
	require.Contains(t, out, "unchanged report")
	require.Contains(t, out, "applied 0 changes")
	edited := strings.Replace(scheduleFile, `"0 2 * * *"`, `"0 3 * * *"`, 1)
	edited = edited[:strings.Index(edited, "  - name: cleanup")]
	require.NoError(t, os.WriteFile(file, []byte(edited), 0o600))
	out, _, err = baton(t, server, "jobs", "apply", "-f", file, "--prune", "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "update    report")
	require.Contains(t, out, "delete    cleanup")
	_, _, err = baton(t, server, "jobs", "apply", "-f", file, "--prune")
	require.NoError(t, err)

	tests := []struct {
		name    string
		args    []string
		want    []string // in stdout
		wantErr string   // in the error; empty for success
	}{
		{"status", []string{"status"}, []string{"executor:", "c1", "c2", "dc-c1"}, ""},
		{"list table", []string{"jobs", "list"}, []string{"NAME", "report", "0 3 * * *", "Europe/Berlin"}, ""},
		{"list by label", []string{"jobs", "list", "--label", "team=data"}, []string{"report"}, ""},
		{"get", []string{"jobs", "get", "report"}, []string{"report", "POST http://127.0.0.1:1/report"}, ""},
		{"pause", []string{"jobs", "pause", "report"}, []string{"report: paused"}, ""},
		{"paused shows", []string{"jobs", "get", "report", "-o", "json"}, []string{`"paused": true`}, ""},
		{"resume", []string{"jobs", "resume", "report"}, []string{"report: resumed"}, ""},
		{"trigger", []string{"jobs", "trigger", "report"}, []string{"report: triggered"}, ""},
		{"runs", []string{"runs", "report", "--limit", "5"}, []string{"SCHEDULED", "manual"}, ""},
		{"preview", []string{"schedule", "preview", "*/10 * * * *", "--timezone", "Europe/Berlin"}, []string{"10 minutes", "CE"}, ""},
		{"unknown job", []string{"jobs", "get", "nope"}, nil, "not_found"},
		{"bad schedule", []string{"schedule", "preview", "61 * * * *"}, nil, "HTTP 400"},
		{"bad status filter", []string{"runs", "report", "--status", "weird"}, nil, "status must be one of"},
		{"bad output", []string{"jobs", "list", "-o", "xml"}, nil, "want table, json or yaml"},
		{"deleted by prune", []string{"jobs", "get", "cleanup"}, nil, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := baton(t, server, tc.args...)
			if tc.wantErr != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			for _, w := range tc.want {
				require.Contains(t, out, w)
			}
		})
	}

	// YAML output parses, with the API's field names.
	out, _, err = baton(t, server, "jobs", "get", "report", "-o", "yaml")
	require.NoError(t, err)
	var j map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(out), &j))
	require.Equal(t, "0 3 * * *", j["schedule"])

	// delete, then it is gone.
	_, _, err = baton(t, server, "jobs", "delete", "report")
	require.NoError(t, err)
	_, _, err = baton(t, server, "jobs", "get", "report")
	require.ErrorContains(t, err, "not_found")
}

func TestBadScheduleFileChangesNothing(t *testing.T) {
	t.Parallel()
	server, _ := cluster(t)
	file := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(file, []byte("jobs:\n  - name: x\n    schedule: \"nope\"\n    target: {type: http, http: {url: \"http://h/\"}}\n"), 0o600))
	_, _, err := baton(t, server, "jobs", "apply", "-f", file)
	require.Error(t, err)
	require.Contains(t, err.Error(), "schedule")
	out, _, err := baton(t, server, "jobs", "list", "-o", "json")
	require.NoError(t, err)
	require.Contains(t, out, `"jobs": []`)
}
