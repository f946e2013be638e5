// Command localdb runs FerretDB v1.24.2 (SQLite backend) on a loopback address.
//
// It embeds FerretDB's package instead of building FerretDB's own command,
// whose binary panics at start when built with `go install` (FerretDB #2982).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:27020", "TCP address to listen on (loopback only)")
	dataDir := flag.String("data", "", "directory for the SQLite files (required)")
	flag.Parse()

	// No in-memory mode: FerretDB then opens a single SQLite connection, which an update's own
	// open read holds while its writes wait for another one, so every update hangs.
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "localdb: -data DIR is required")
		os.Exit(2)
	}
	abs, err := filepath.Abs(*dataDir)
	if err == nil {
		err = os.MkdirAll(abs, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "localdb: data directory:", err)
		os.Exit(2)
	}
	lock, err := lockDataDir(abs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "localdb:", err)
		os.Exit(1)
	}
	defer lock.Close() // held until the process ends
	// synchronous(normal): a commit no longer waits for the disk. In WAL mode a killed process
	// loses nothing; an OS crash or a power cut can lose the last commits: right for a local and
	// test server, where every document update is a commit of its own. FerretDB adds its own
	// pragmas (busy_timeout, journal_mode(wal), auto_vacuum) only when the URL has none of them.
	sqliteURL := "file:" + strings.TrimSuffix(filepath.ToSlash(abs), "/") + "/?_pragma=synchronous(normal)"

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "localdb:", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	indexAllIDs(ctx, abs)
	go keepIDIndexes(ctx, abs, 200*time.Millisecond)

	fmt.Fprintf(os.Stderr, "localdb: FerretDB listening on %s (data: %s)\n", *addr, sqliteURL)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "localdb:", err)
		os.Exit(1)
	}
}
