package job

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"gopkg.in/yaml.v3"
)

// DecodeFile reads a schedule file: YAML (or JSON) holding either
//
//	jobs:
//	  - name: nightly-report
//	    schedule: "0 2 * * *"
//	    target: {type: http, http: {url: "https://…"}}
//
// or, like sidekiq-cron's load_from_hash, a map from job name to job:
//
//	nightly-report:
//	  schedule: "0 2 * * *"
//	  target: {type: http, http: {url: "https://…"}}
//
// Each job is decoded with the same rules as the API (unknown fields are
// errors), normalized and validated.
func DecodeFile(data []byte, opts Options) ([]Job, error) {
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("schedule file: %w", err)
	}
	top, ok := raw.(map[string]any)
	if !ok {
		if raw == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("schedule file: expected a map of jobs or a \"jobs:\" list")
	}
	var entries []map[string]any
	if list, ok := top["jobs"]; ok && len(top) == 1 {
		items, ok := list.([]any)
		if !ok {
			return nil, fmt.Errorf("schedule file: \"jobs\" must be a list")
		}
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("schedule file: jobs[%d] must be a map", i)
			}
			entries = append(entries, m)
		}
	} else {
		names := make([]string, 0, len(top))
		for name := range top {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			m, ok := top[name].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("schedule file: job %q must be a map", name)
			}
			if n, set := m["name"]; set && n != name {
				return nil, fmt.Errorf("schedule file: job %q has name %v", name, n)
			}
			m["name"] = name
			entries = append(entries, m)
		}
	}
	jobs := make([]Job, 0, len(entries))
	seen := map[string]bool{}
	for i, m := range entries {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("schedule file: job %d: %w", i, err)
		}
		j, err := Decode(bytes.NewReader(b))
		if err == nil {
			j.Normalize()
			err = j.Validate(opts)
		}
		if err != nil {
			label := fmt.Sprintf("job %d", i)
			if n, ok := m["name"].(string); ok {
				label = fmt.Sprintf("job %q", n)
			}
			return nil, fmt.Errorf("schedule file: %s: %w", label, err)
		}
		if seen[j.Name] {
			return nil, fmt.Errorf("schedule file: job %q appears twice", j.Name)
		}
		seen[j.Name] = true
		jobs = append(jobs, *j)
	}
	return jobs, nil
}
