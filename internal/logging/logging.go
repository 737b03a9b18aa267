// Package logging builds the slog.Logger of kanade programs: text to
// standard error, or to a size-rotated file so that a chatty endpoint
// never fills its disk with logs.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/natefinch/lumberjack.v2"
)

// ParseLevel maps debug|info|warn|warning|error to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q is not one of debug, info, warn, error", s)
}

// New returns a logger writing to path (rotated at 10 MiB, 5 files kept) or
// to stderr when path is empty, and a closer for the file.
func New(level slog.Level, path string) (*slog.Logger, io.Closer, error) {
	var w io.Writer = os.Stderr
	var c io.Closer = io.NopCloser(nil)
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, nil, fmt.Errorf("log directory: %w", err)
		}
		lj := &lumberjack.Logger{Filename: path, MaxSize: 10, MaxBackups: 5, Compress: false}
		w, c = lj, lj
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), c, nil
}
