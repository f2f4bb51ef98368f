//go:build !unix

package harness

// lockFile is a no-op where flock(2) does not exist; concurrent builds then
// still publish the binary atomically, they only duplicate work.
func lockFile(path string) (unlock func(), err error) { return func() {}, nil }
