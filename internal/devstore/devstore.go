// Package devstore runs an embedded FerretDB (SQLite handler) as a
// MongoDB-compatible store for tests, the local development cluster, and the
// chaos and benchmark tools. Production uses a real MongoDB; nothing in the
// service imports this package.
package devstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Server is a running embedded FerretDB.
type Server struct {
	uri    string
	dir    string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Options configure Start.
type Options struct {
	// Dir holds the SQLite files. Empty means a new temporary directory that
	// Stop removes.
	Dir string
	// Addr is the TCP listen address; empty means 127.0.0.1 on a free port.
	Addr string
	// Logger receives FerretDB's own logs; nil discards them (it logs every
	// error reply, such as an expected duplicate key, at warning level).
	Logger *slog.Logger
}

// Start starts FerretDB and returns once it accepts connections.
func Start(opts Options) (*Server, error) {
	dir, ownDir := opts.Dir, false
	if dir == "" {
		d, err := os.MkdirTemp("", "baton-ferretdb-")
		if err != nil {
			return nil, fmt.Errorf("devstore: temp dir: %w", err)
		}
		dir, ownDir = d, true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devstore: %w", err)
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("devstore: new FerretDB: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{dir: dir, cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = f.Run(ctx)
		if ownDir {
			_ = os.RemoveAll(dir)
		}
	}()
	// MongoDBURI blocks until the listener is bound.
	s.uri = f.MongoDBURI()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.indexIDs(ctx)
	}()
	return s, nil
}

// URI is the MongoDB connection string of the server.
func (s *Server) URI() string { return s.uri }

// Stop stops the server and waits for it.
func (s *Server) Stop() {
	s.cancel()
	s.wg.Wait()
}

// indexIDs adds, to every collection table, an index on the exact expression
// FerretDB 1.24's SQLite backend uses to look documents up by _id. FerretDB
// builds its own _id index on a different spelling of the path, so SQLite
// never uses it and every lookup, update and delete by _id scans the whole
// table (measured: 35 ms per update at 10,000 documents, growing linearly).
// With this index those operations are logarithmic, as on MongoDB.
func (s *Server) indexIDs(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	done := map[string]bool{}
	for {
		s.indexOnce(ctx, done)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) indexOnce(ctx context.Context, done map[string]bool) {
	files, _ := filepath.Glob(filepath.Join(s.dir, "*.sqlite"))
	for _, file := range files {
		if err := indexFile(ctx, file, done); err != nil && !errors.Is(err, context.Canceled) {
			continue // the file may be mid-creation; the next pass retries
		}
	}
}

func indexFile(ctx context.Context, file string, done map[string]bool) error {
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var name string
		if rows.Scan(&name) == nil {
			tables = append(tables, name)
		}
	}
	rows.Close()
	for _, table := range tables {
		key := file + "/" + table
		if done[key] {
			continue
		}
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`,
			strings.ReplaceAll(table, `"`, ``)+"_baton_id_lookup", table)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		done[key] = true
	}
	return nil
}
