package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batonhq/baton/executor"
)

// crudRows measures forwarded writes (job creates through the API) at
// concurrency 1 and 32, sent to a standby and to the executor: every write
// goes through the broker to the executor, which writes the store under its
// epoch and replies. Both instances run in this process.
func crudRows(ctx context.Context, env *benchEnv) ([]row, error) {
	name := clusterName("crud", 0)
	_, cleanup, err := openDB(ctx, env, name)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	exec, err := startInstance(ctx, instanceConfig(env, name, "crud-executor", executor.Hooks{}))
	if err != nil {
		return nil, err
	}
	defer exec.Close()
	if err := waitLoaded(ctx, exec.Executor, time.Minute); err != nil {
		return nil, err
	}
	standby, err := startInstance(ctx, instanceConfig(env, name, "crud-standby", executor.Hooks{}))
	if err != nil {
		return nil, err
	}
	defer standby.Close()
	for deadline := time.Now().Add(30 * time.Second); !standby.CRUD.Connected(); {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the standby's write client did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := env.o.crudProfile; p != "" {
		stop, err := startCPUProfile(p)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	var rows []row
	for _, via := range []struct {
		name string
		addr string
	}{{"standby", standby.Addr()}, {"executor", exec.Addr()}} {
		for _, c := range []int{1, 32} {
			r, err := writes(ctx, env, fmt.Sprintf("crud-%s-c%d", via.name, c), via.addr, c, env.o.crudN)
			rows = append(rows, r)
			if err != nil {
				return rows, err
			}
		}
	}
	return rows, nil
}

// writes creates n jobs through the API at addr from c goroutines.
func writes(ctx context.Context, env *benchEnv, scenario, addr string, c, n int) (row, error) {
	r := row{Scenario: scenario, N: n, Recorded: -1}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	lats := make([]time.Duration, n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	resetPeakRSS()
	m := startMeter(env.aux)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				body, _ := json.Marshal(map[string]any{
					"name": fmt.Sprintf("%s-%d", scenario, i), "schedule": "0 0 1 1 *",
					"target": map[string]any{"type": "http", "http": map[string]any{"url": env.aux.URL + "/crud"}},
				})
				t0 := time.Now()
				resp, err := client.Post("http://"+addr+"/api/v1/jobs", "application/json", bytes.NewReader(body))
				if err == nil {
					msg, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
					}
				}
				lats[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	m.stop(&r)
	slices.Sort(lats)
	r.P50, r.P99, r.Max = quantile(lats, 0.5), quantile(lats, 0.99), quantile(lats, 1)
	r.Last = elapsed
	r.Rate = float64(n) / elapsed.Seconds()
	r.Note = "latency per write; both instances in this process (cpu s and RSS are both)"
	if f := failed.Load(); f > 0 {
		return r, fmt.Errorf("%d of %d writes failed, first: %v", f, n, firstErr.Load())
	}
	return r, nil
}
