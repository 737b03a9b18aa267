package atomicfile

// SyncDir is a no-op on Windows: NTFS journals the rename itself, and a
// directory handle cannot be flushed with FlushFileBuffers.
func SyncDir(string) {}
