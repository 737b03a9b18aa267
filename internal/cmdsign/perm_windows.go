package cmdsign

import "os"

// checkPrivate has nothing to check on Windows: Unix mode bits do not
// exist there and the file's ACL (a user profile directory by default) is
// what protects it.
func checkPrivate(string, os.FileInfo) error { return nil }
