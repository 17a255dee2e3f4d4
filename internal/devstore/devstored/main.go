// Command devstored runs the embedded FerretDB store as its own process.
// Tests built with the race detector start it instead of an in-process
// store: the SQLite engine under race instrumentation is many times slower,
// and that slowness, not Baton, dominated failover timings in tests.
//
// It prints the store's MongoDB URI as its first line of output and runs
// until SIGTERM, SIGINT, or its standard input closes (its parent died).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/batonhq/baton/internal/devstore"
)

func main() {
	dir := flag.String("dir", "", "SQLite directory (default: a temporary one, removed on exit)")
	addr := flag.String("addr", "", "listen address (default: 127.0.0.1 on a free port)")
	flag.Parse()
	s, err := devstore.Start(devstore.Options{Dir: *dir, Addr: *addr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstored:", err)
		os.Exit(1)
	}
	defer s.Stop()
	fmt.Println(s.URI())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
}
