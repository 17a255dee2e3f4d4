// Command chaos is Baton's fault-injection suite. It runs a cluster of real
// baton processes against the local RabbitMQ and an embedded
// MongoDB-compatible store, with a TCP proxy between every instance and the
// broker and one in front of the store. Jobs fire every second at a receiver
// that logs (job, scheduled_at, fire_id, instance, epoch). A seeded sequence
// of faults is injected; at the end the receiver's log is audited against
// the schedule and the run records, and a table is printed.
//
// It exits non-zero on any doubled tick, tick neither fired nor recorded,
// moment with two executors, or fire by an old executor after a newer one
// began.
//
//	go run ./cmd/chaos -faults 50 -seed 1        # the long run
//	go run ./cmd/chaos -faults 12 -seed 7        # what CI runs
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	instances int
	faults    int
	seed      int64
	jobs      int
	amqpURL   string
	only      string
	settle    time.Duration
	verbose   bool
}

func main() {
	var o options
	flag.IntVar(&o.instances, "instances", 4, "cluster size (3 to 5)")
	flag.IntVar(&o.faults, "faults", 12, "number of faults to inject")
	flag.Int64Var(&o.seed, "seed", 1, "seed that fixes the fault sequence")
	flag.IntVar(&o.jobs, "jobs", 5, "jobs firing every second")
	flag.StringVar(&o.amqpURL, "amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	flag.StringVar(&o.only, "only", "", "comma-separated fault types to draw from (default: all)")
	flag.DurationVar(&o.settle, "settle", 4*time.Second, "steady time between faults")
	flag.BoolVar(&o.verbose, "v", false, "log every step")
	flag.Parse()
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o, log)
	if rep != nil {
		rep.print(os.Stdout, o)
	}
	if err != nil {
		log.Error("chaos", "error", err)
		os.Exit(2)
	}
	if problems := rep.problems(); len(problems) > 0 {
		fmt.Fprintln(os.Stdout, "FAILED: "+strings.Join(problems, "; "))
		os.Exit(1)
	}
	fmt.Fprintln(os.Stdout, "PASSED")
}
