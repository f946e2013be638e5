//go:build !unix

package main

import "os"

// lockDataDir: no lock where flock is missing; scripts/local-db.sh (Linux) gives each port its own folder.
func lockDataDir(dir string) (*os.File, error) {
	return os.Open(dir)
}
