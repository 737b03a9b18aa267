// Package runner spawns one script in a shell and collects its outcome.
//
// Guarantees:
//   - The script runs with empty stdin in its own process tree (a process
//     group on Unix, a Job Object on Windows, the child created suspended and
//     assigned before its first instruction), and when the run ends (timeout,
//     kill, or the script's own exit) nothing it started survives.
//   - Output is decoded lossily as UTF-8, so stray bytes (CP932, binary)
//     never erase a whole result, and each stream is capped at OutputCap
//     bytes keeping the head and the tail with a marker in between.
//   - Cancelling the context kills the tree; the cause given to
//     context.WithCancelCause is appended to stderr.
package runner
