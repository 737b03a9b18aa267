package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
)

// retention maps each trimmable table to its time column.
var retention = map[string]string{
	"results":           "finished_at",
	"started":           "started_at",
	"timeline":          "at",
	"inventory_history": "collected_at",
	"audit":             "at",
}

// TrimmableTables lists the tables TrimOlderThan and TrimBatch accept.
func TrimmableTables() []string {
	return []string{"results", "started", "timeline", "inventory_history", "audit"}
}

// TrimOlderThan deletes rows of table whose time is before cutoff, batch
// rows per transaction so that projectors are never blocked for long, and
// returns how many it deleted. Trimmable tables: results (finished_at),
// started (started_at), timeline (at), inventory_history (collected_at) and
// audit (at). exec_counters keep their totals.
func (s *Store) TrimOlderThan(ctx context.Context, table string, cutoff time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = 1000
	}
	var total int64
	for {
		n, err := s.TrimBatch(ctx, table, cutoff, batch)
		total += n
		if err != nil || n < int64(batch) {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// TrimBatch deletes at most batch rows of table whose time is before
// cutoff, in one transaction of its own, and returns how many it deleted:
// fewer than batch means none is left. Each batch goes through the single
// writer connection like a projector's transaction, so projectors commit
// between two batches of a long trim. See TrimOlderThan for the tables.
func (s *Store) TrimBatch(ctx context.Context, table string, cutoff time.Time, batch int) (int64, error) {
	col, ok := retention[table]
	if !ok {
		return 0, invalid("table %q has no retention (trimmable: %s)", table, strings.Join(TrimmableTables(), ", "))
	}
	if batch <= 0 {
		return 0, invalid("trim batch of %d rows", batch)
	}
	// The time columns are indexed: the inner SELECT reads only the rows
	// it deletes.
	q := fmt.Sprintf(`DELETE FROM %[1]s WHERE rowid IN (SELECT rowid FROM %[1]s WHERE %[2]s < ? LIMIT ?)`, table, col)
	res, err := s.w.ExecContext(ctx, q, cutoff.UnixMilli(), batch)
	if err != nil {
		return 0, fmt.Errorf("store: trim %s: %w", table, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: trim %s: %w", table, err)
	}
	return n, nil
}

// fingerprints lists, per table, the columns that identify its content and
// the order to read them in. agents leaves out its clocks: it is refilled
// from live heartbeats, not replayed.
var fingerprints = map[string]struct{ cols, order string }{
	"agents":            {"pc_id, hostname, os_family, arch, agent_version, machine_id, groups, quarantined_versions, command_signing, command_key_fingerprints", "pc_id"},
	"results":           {resultCols, "result_id"},
	"started":           {"result_id, request_id, exec_id, pc_id, started_at", "result_id"},
	"exec_counters":     {"exec_id, results, succeeded, failed, skipped, killed", "exec_id"},
	"executions":        {"exec_id, job_id, first_seen_at, last_result_at, running", "exec_id"},
	"timeline":          {"pc_id, source, event_record_id, kind, at, payload, stream_seq", "pc_id, source, event_record_id"},
	"inventory_latest":  {"pc_id, section, hash, collected_at, confirmed_at, data", "pc_id, section"},
	"inventory_history": {"pc_id, section, hash, collected_at", "pc_id, section, collected_at, hash"},
	"audit":             {"seq, at, actor, action, target, payload", "seq"},
}

// Fingerprint summarises a table's content: its row count and a SHA-256 over
// its key columns in key order. Two databases projected from the same
// streams have equal fingerprints; it is how a rebuild is verified.
type Fingerprint struct {
	Rows   int64  `json:"rows"`
	SHA256 string `json:"sha256"`
}

// Fingerprint computes a table's Fingerprint (see the type). Tables:
// agents, results, started, exec_counters, executions, timeline,
// inventory_latest, inventory_history, audit.
func (s *Store) Fingerprint(ctx context.Context, table string) (Fingerprint, error) {
	fp, ok := fingerprints[table]
	if !ok {
		return Fingerprint{}, invalid("unknown table %q", table)
	}
	rows, err := s.r.QueryContext(ctx, fmt.Sprintf(`SELECT %s FROM %s ORDER BY %s`, fp.cols, table, fp.order))
	if err != nil {
		return Fingerprint{}, err
	}
	defer rows.Close()
	n := len(strings.Split(fp.cols, ","))
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	h := sha256.New()
	var out Fingerprint
	var buf [9]byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return Fingerprint{}, err
		}
		out.Rows++
		for _, v := range vals {
			// A type tag and a length prefix: no two different rows
			// hash the same bytes.
			switch v := v.(type) {
			case nil:
				h.Write([]byte{0})
			case int64:
				buf[0] = 1
				binary.BigEndian.PutUint64(buf[1:], uint64(v))
				h.Write(buf[:])
			case float64:
				buf[0] = 2
				binary.BigEndian.PutUint64(buf[1:], math.Float64bits(v))
				h.Write(buf[:])
			case string:
				buf[0] = 3
				binary.BigEndian.PutUint64(buf[1:], uint64(len(v)))
				h.Write(buf[:])
				h.Write([]byte(v))
			case []byte:
				buf[0] = 4
				binary.BigEndian.PutUint64(buf[1:], uint64(len(v)))
				h.Write(buf[:])
				h.Write(v)
			case bool:
				buf[0] = 5
				if v {
					buf[1] = 1
				} else {
					buf[1] = 0
				}
				h.Write(buf[:2])
			default:
				fmt.Fprintf(h, "\x06%T:%v", v, v)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return Fingerprint{}, err
	}
	out.SHA256 = hex.EncodeToString(h.Sum(nil))
	return out, nil
}
