package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"
)

// FerretDB v1.24.2 indexes `_id` as `_ferretdb_sjson->"_id"` but looks it up as
// `_ferretdb_sjson->'$._id'`; SQLite only uses an index for the very expression it was built on,
// so every find, update or delete by `_id` scans the whole table and a backfill of N documents
// costs N full scans. keepIDIndexes adds, to every collection table, an index on the expression
// the queries use (invisible to FerretDB, dropped with its table), a moment after FerretDB
// creates the table. Call indexAllIDs once before FerretDB starts: indexing a big existing table
// then blocks no writer.
func keepIDIndexes(ctx context.Context, dir string, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		indexAllIDs(ctx, dir)
	}
}

func indexAllIDs(ctx context.Context, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
	for _, file := range files {
		_ = indexIDs(ctx, file) // a database being created or dropped right now: next tick
	}
}

const missingIDIndexes = `SELECT c.table_name FROM _ferretdb_collections c WHERE NOT EXISTS
	(SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = c.table_name || '$localdb_id')`

func indexIDs(ctx context.Context, file string) error {
	// mode=rw: never create a file FerretDB has just dropped.
	db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(file)+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	rows, err := db.QueryContext(ctx, missingIDIndexes)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, table)
	}
	rows.Close()

	for _, table := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, table+"$localdb_id", table)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
