// Command devcluster runs a local Baton cluster for development: an embedded
// MongoDB-compatible store (FerretDB) and three instances of the real
// binary, in datacenters dc1 to dc3, on ports 8081 to 8083, against the
// local RabbitMQ. Stop it with Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/batonhq/baton/internal/devstore"
	"github.com/batonhq/baton/internal/testcluster"
)

func main() {
	n := flag.Int("instances", 3, "number of instances")
	port := flag.Int("port", 8081, "HTTP port of the first instance")
	amqpURL := flag.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	name := flag.String("cluster", "baton-dev", "cluster name")
	dataDir := flag.String("data", "", "store directory (default: a temporary one, removed at exit)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*n, *port, *amqpURL, *name, *dataDir, log); err != nil {
		log.Error("devcluster", "error", err)
		os.Exit(1)
	}
}

func run(n, port int, amqpURL, name, dataDir string, log *slog.Logger) error {
	st, err := devstore.Start(devstore.Options{Dir: dataDir})
	if err != nil {
		return err
	}
	defer st.Stop()
	log.Info("store running", "uri", st.URI())
	c, err := testcluster.New(testcluster.Options{Name: name, MongoURI: st.URI(), AMQPURL: amqpURL,
		Env: map[string]string{"BATON_LOG_LEVEL": "info"}})
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range n {
		node, err := c.AddAt(fmt.Sprintf("baton-%d", i+1), fmt.Sprintf("dc%d", i+1), fmt.Sprintf("127.0.0.1:%d", port+i))
		if err != nil {
			return err
		}
		log.Info("instance running", "id", node.ID, "api", "http://"+node.HTTP+"/api/v1/cluster")
	}
	log.Info("cluster running; logs in "+c.LogDir(), "instances", n)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("stopping")
	return nil
}
