// Package store is the backend's SQLite projection of the JetStream streams
// (DESIGN.md §4): agents from heartbeats, results and per-execution
// counters, in-flight executions, the timeline, inventory and the audit log.
//
// JetStream stays the source of truth. Every write is idempotent so that a
// redelivered message changes nothing, and the whole database can be deleted
// and rebuilt by replaying the streams: Fresh reports that this Open created
// the schema, and the projectors then replay from the start.
//
// Times are stored as INTEGER Unix milliseconds (UTC); JSON as TEXT. Writes
// go through one connection (SQLite has one writer) in batched transactions
// (Tx); reads use a separate pool of read-only connections, which WAL lets
// run beside the writer.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrNotFound is returned by single-row reads when the row does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrInvalid wraps every rejection of a malformed input (a message missing
// its key fields, an unknown sort or table name). Such an input can never
// succeed: the projectors count it and move on.
var ErrInvalid = errors.New("store: invalid input")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Store is an open projection database. Safe for concurrent use.
type Store struct {
	path  string
	w     *sql.DB // the single writer connection
	r     *sql.DB // read-only pool
	fresh bool
	now   func() time.Time

	stmts map[string]*sql.Stmt // prepared on w, bound to each Tx
}

// pragmas every connection gets. busy_timeout covers a second process
// (an operator's sqlite3 shell, a backup) holding the lock for a moment.
const pragmas = "_pragma=busy_timeout(10000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(1)" +
	"&_pragma=temp_store(MEMORY)" +
	"&_pragma=cache_size(-32000)"

// Open opens (creating if needed) the database at path and applies the
// embedded migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	// The driver splits the DSN at the first '?', so a '?' in the path
	// itself would be mistaken for parameters: refuse it.
	for _, c := range path {
		if c == '?' {
			return nil, fmt.Errorf("store: database path %q must not contain '?'", path)
		}
	}
	w, err := sql.Open("sqlite", path+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{path: path, w: w, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	// Read connections never write; query_only makes a mistake loud.
	r, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma="+url.QueryEscape("query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s.r = r
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, sub,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("store: migrating %s: %w", s.path, err)
	}
	for _, r := range res {
		if r.Source != nil && r.Source.Version == 1 {
			s.fresh = true
		}
	}
	if len(res) > 0 {
		v, _ := p.GetDBVersion(ctx)
		slog.Default().Info("sqlite schema migrated", "path", s.path, "applied", len(res), "version", v, "fresh", s.fresh)
	}
	return nil
}

// Fresh reports whether this Open created the schema from scratch: the
// database holds nothing, and every stream must be replayed from its start.
func (s *Store) Fresh() bool { return s.fresh }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes both pools. The caller stops every writer first.
func (s *Store) Close() error {
	var errs []error
	// Let SQLite refresh the planner's statistics where they are stale
	// (cheap; recommended before closing a long-lived connection).
	_, _ = s.w.Exec(`PRAGMA optimize`)
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// SetClock replaces the clock used for online/offline decisions (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// Meta returns a value of the meta table.
func (s *Store) Meta(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

// SetMeta writes a value of the meta table.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// Tx runs fn in one write transaction and commits when fn returns nil. All
// of a batch's writes go through one Tx: one commit (one WAL sync point)
// for hundreds of messages.
func (s *Store) Tx(ctx context.Context, fn func(*Tx) error) error {
	stx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	t := &Tx{ctx: ctx, tx: stx, s: s}
	if err := fn(t); err != nil {
		t.close()
		stx.Rollback()
		return err
	}
	if err := t.flushCounters(); err != nil {
		t.close()
		stx.Rollback()
		return err
	}
	t.close()
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// ms converts a time to Unix milliseconds; the zero time is NULL.
func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// msz converts a time to Unix milliseconds; the zero time is 0 (for NOT
// NULL columns; the projectors fill missing times from the stream's own
// timestamp, so this is a last resort).
func msz(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS converts Unix milliseconds (possibly NULL) back to a UTC time.
func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}
