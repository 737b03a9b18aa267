package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// Outcomes of a result, as stored in results.outcome and counted in
// exec_counters.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeSkipped   = "skipped"
	OutcomeKilled    = "killed"
	// OutcomeRunning is not a result: a started event without a result.
	OutcomeRunning = "running"
)

// Finer classes of a result, each a kind of one outcome (see Classify).
const (
	// ClassTimedOut: killed because the run hit its timeout (an
	// OutcomeKilled).
	ClassTimedOut = "timed_out"
	// ClassInvalid: the agent could not decode the command (exit 122).
	ClassInvalid = "invalid"
	// ClassSpawnFailed: the shell could not be started (exit 128).
	ClassSpawnFailed = "spawn_failed"
	// ClassOutcomeUnknown: the agent stopped during the run (exit 129).
	ClassOutcomeUnknown = "outcome_unknown"
)

// Classes lists every value Classify returns, so that metrics can show
// each series from the start.
func Classes() []string {
	return []string{OutcomeSucceeded, OutcomeFailed, ClassTimedOut, OutcomeKilled, OutcomeSkipped,
		ClassInvalid, ClassSpawnFailed, ClassOutcomeUnknown}
}

// Classify is the one classification of a result. Skipped comes first
// (every synthetic result but 123 is skipped; 122, 128 and 129 have their
// own class, the gates 124 to 127 are plain skipped), then exit -1 (timed
// out when the agent says so, else killed), then success or failure by exit
// code. A result that is not skipped carries the script's own exit code,
// so 123 (refused, never skipped) cannot be told from a script exiting 123
// and counts as failed.
//
// Outcome folds the classes into the four outcomes stored and counted per
// execution; kanade_results_total shows the classes themselves.
func Classify(r wire.ExecResult) string {
	switch {
	case r.Skipped && r.ExitCode == wire.ExitInvalidCommand:
		return ClassInvalid
	case r.Skipped && r.ExitCode == wire.ExitSpawnFailed:
		return ClassSpawnFailed
	case r.Skipped && r.ExitCode == wire.ExitOutcomeUnknown:
		return ClassOutcomeUnknown
	case r.Skipped:
		return OutcomeSkipped
	case r.ExitCode == wire.ExitKilled && r.TimedOut:
		return ClassTimedOut
	case r.ExitCode == wire.ExitKilled:
		return OutcomeKilled
	case r.ExitCode == 0:
		return OutcomeSucceeded
	}
	return OutcomeFailed
}

// OutcomeOf folds a class (Classify) into its outcome.
func OutcomeOf(class string) string {
	switch class {
	case ClassTimedOut:
		return OutcomeKilled
	case ClassInvalid, ClassSpawnFailed, ClassOutcomeUnknown:
		return OutcomeSkipped
	}
	return class
}

// Outcome is the result's stored outcome: succeeded, failed, skipped or
// killed (timeouts included).
func Outcome(r wire.ExecResult) string { return OutcomeOf(Classify(r)) }

// CheckResult reports a result the store cannot key.
func CheckResult(r wire.ExecResult) error {
	switch {
	case r.ResultID == "":
		return invalid("result without result_id")
	case r.ExecID == "":
		return invalid("result %s without exec_id", r.ResultID)
	case r.PCID == "":
		return invalid("result %s without pc_id", r.ResultID)
	}
	return nil
}

// CheckStarted reports a started event the store cannot key.
func CheckStarted(e wire.EventStarted) error {
	switch {
	case e.ResultID == "":
		return invalid("started event without result_id")
	case e.ExecID == "":
		return invalid("started event %s without exec_id", e.ResultID)
	case e.PCID == "":
		return invalid("started event %s without pc_id", e.ResultID)
	}
	return nil
}

// CheckObs reports a timeline event the store cannot key.
func CheckObs(e wire.ObsEvent) error {
	switch {
	case e.PCID == "":
		return invalid("obs event without pc_id")
	case e.Kind == "":
		return invalid("obs event from %s without kind", e.PCID)
	}
	return nil
}

// CheckInventory reports an inventory message the store cannot apply.
func CheckInventory(m wire.InventoryMessage) error {
	switch {
	case m.PCID == "":
		return invalid("inventory without pc_id")
	case m.Section == "":
		return invalid("inventory from %s without section", m.PCID)
	case m.Hash == "":
		return invalid("inventory %s/%s without hash", m.PCID, m.Section)
	case !m.Unchanged && len(m.Data) == 0:
		return invalid("inventory %s/%s: a full section without data", m.PCID, m.Section)
	}
	return nil
}

// CheckAudit reports an audit event the store cannot keep.
func CheckAudit(e wire.AuditEvent) error {
	if e.Actor == "" || e.Action == "" {
		return invalid("audit event without actor or action")
	}
	return nil
}

// Statements prepared once on the writer connection and bound to each Tx.
var statements = map[string]string{
	"result.insert": `INSERT INTO results (result_id, request_id, exec_id, job_id, version, manifest_id,
		pc_id, exit_code, skipped, outcome, stdout, stderr, stdout_object, stderr_object,
		started_at, finished_at, attempts, stream_seq, timed_out)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (result_id) DO NOTHING`,
	"result.old": `SELECT exec_id, outcome, stream_seq FROM results WHERE result_id = ?`,
	"result.update": `UPDATE results SET request_id = ?, exec_id = ?, job_id = ?, version = ?,
		manifest_id = ?, pc_id = ?, exit_code = ?, skipped = ?, outcome = ?, stdout = ?, stderr = ?,
		stdout_object = ?, stderr_object = ?, started_at = ?, finished_at = ?, attempts = ?,
		stream_seq = ?, timed_out = ? WHERE result_id = ?`,
	"counters.add": `INSERT INTO exec_counters (exec_id, results, succeeded, failed, skipped, killed)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (exec_id) DO UPDATE SET
			results = results + excluded.results,
			succeeded = succeeded + excluded.succeeded,
			failed = failed + excluded.failed,
			skipped = skipped + excluded.skipped,
			killed = killed + excluded.killed`,
	"started.insert": `INSERT INTO started (result_id, request_id, exec_id, pc_id, started_at, job_id)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (result_id) DO NOTHING`,
	"timeline.insert": `INSERT INTO timeline (pc_id, source, event_record_id, kind, at, payload, stream_seq)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pc_id, source, event_record_id) DO NOTHING`,
	"inventory.latest": `SELECT hash, collected_at FROM inventory_latest WHERE pc_id = ? AND section = ?`,
	"inventory.replace": `INSERT INTO inventory_latest (pc_id, section, hash, collected_at, confirmed_at, data)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (pc_id, section) DO UPDATE SET hash = excluded.hash,
			collected_at = excluded.collected_at, confirmed_at = excluded.confirmed_at,
			data = excluded.data`,
	"inventory.history": `INSERT INTO inventory_history (pc_id, section, hash, collected_at)
		VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
	"inventory.confirm": `UPDATE inventory_latest SET confirmed_at = max(confirmed_at, ?)
		WHERE pc_id = ? AND section = ? AND hash = ?`,
	"audit.insert": `INSERT INTO audit (seq, at, actor, action, target, payload)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`,
	// The heartbeat upsert applies only a heartbeat at least as new as the
	// stored one, so last_seen never moves backwards. online_since restarts
	// when the previous heartbeat was already past the offline threshold.
	"agent.upsert": `INSERT INTO agents (pc_id, hostname, os_family, arch, agent_version, machine_id,
		groups, quarantined_versions, rss_bytes, cpu_pct, outbox_depth, reported_at,
		first_seen, last_seen, online_since, heartbeat_interval_secs, command_signing, command_key_fingerprints)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (pc_id) DO UPDATE SET
			hostname = excluded.hostname,
			os_family = excluded.os_family,
			arch = excluded.arch,
			agent_version = excluded.agent_version,
			machine_id = excluded.machine_id,
			groups = excluded.groups,
			quarantined_versions = excluded.quarantined_versions,
			rss_bytes = excluded.rss_bytes,
			cpu_pct = excluded.cpu_pct,
			outbox_depth = excluded.outbox_depth,
			reported_at = excluded.reported_at,
			first_seen = min(agents.first_seen, excluded.first_seen),
			online_since = CASE
				WHEN excluded.last_seen > agents.last_seen + 3000 * agents.heartbeat_interval_secs
				THEN excluded.last_seen ELSE agents.online_since END,
			last_seen = excluded.last_seen,
			heartbeat_interval_secs = excluded.heartbeat_interval_secs,
			command_signing = excluded.command_signing,
			command_key_fingerprints = excluded.command_key_fingerprints
		WHERE excluded.last_seen >= agents.last_seen`,
}

func (s *Store) prepare(ctx context.Context) error {
	s.stmts = make(map[string]*sql.Stmt, len(statements))
	for name, q := range statements {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("store: prepare %s: %w", name, err)
		}
		s.stmts[name] = st
	}
	return nil
}

// Tx is one write transaction; see Store.Tx. Not safe for concurrent use.
type Tx struct {
	ctx   context.Context
	tx    *sql.Tx
	s     *Store
	bound map[string]*sql.Stmt
	// counters accumulates exec_counters deltas, written once per
	// execution at commit: a batch of 500 results of one broadcast costs
	// one counter update, not 500.
	counters map[string]*counterDelta
	// added counts the results this transaction stored for the first
	// time, by class (AddedResults).
	added map[string]uint64
	// execs accumulates the executions rows' job and times (executions.go).
	execs map[string]*execFold
}

type counterDelta struct{ results, succeeded, failed, skipped, killed int64 }

func (d *counterDelta) add(outcome string, n int64) {
	d.results += n
	switch outcome {
	case OutcomeSucceeded:
		d.succeeded += n
	case OutcomeFailed:
		d.failed += n
	case OutcomeSkipped:
		d.skipped += n
	case OutcomeKilled:
		d.killed += n
	}
}

func (t *Tx) stmt(name string) *sql.Stmt {
	if st, ok := t.bound[name]; ok {
		return st
	}
	if t.bound == nil {
		t.bound = make(map[string]*sql.Stmt, 4)
	}
	st := t.tx.StmtContext(t.ctx, t.s.stmts[name])
	t.bound[name] = st
	return st
}

func (t *Tx) close() {
	for _, st := range t.bound {
		st.Close()
	}
	t.bound = nil
}

// Exec runs an arbitrary statement inside the transaction (migrations of
// data, tests).
func (t *Tx) Exec(query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, query, args...)
}

func (t *Tx) count(execID, outcome string, n int64) {
	if t.counters == nil {
		t.counters = make(map[string]*counterDelta)
	}
	d := t.counters[execID]
	if d == nil {
		d = &counterDelta{}
		t.counters[execID] = d
	}
	d.add(outcome, n)
}

func (t *Tx) flushCounters() error {
	if err := t.flushExecutions(); err != nil {
		return err
	}
	if len(t.counters) == 0 {
		return nil
	}
	st := t.stmt("counters.add")
	for id, d := range t.counters {
		if *d == (counterDelta{}) {
			continue
		}
		if _, err := st.ExecContext(t.ctx, id, d.results, d.succeeded, d.failed, d.skipped, d.killed); err != nil {
			return fmt.Errorf("store: exec counters %s: %w", id, err)
		}
	}
	t.counters = nil
	return nil
}

// UpsertResult stores a result keyed by result_id. seq is its RESULTS
// stream sequence: a result_id seen again with the same or an older
// sequence (a redelivery, a replay) changes nothing; a newer one replaces
// the row and moves the execution's counters from the old outcome to the
// new one. A result is counted once however often it arrives.
func (t *Tx) UpsertResult(r wire.ExecResult, seq uint64) error {
	if err := CheckResult(r); err != nil {
		return err
	}
	class := Classify(r)
	outcome := OutcomeOf(class)
	// timed_out is the class, not the raw flag: a flag on a result that
	// was not killed (exit 0, say) is not a timeout.
	timedOut := class == ClassTimedOut
	res, err := t.stmt("result.insert").ExecContext(t.ctx,
		r.ResultID, r.RequestID, r.ExecID, r.JobID, r.Version, r.ManifestID,
		r.PCID, r.ExitCode, r.Skipped, outcome, r.Stdout, r.Stderr, r.StdoutObject, r.StderrObject,
		ms(r.StartedAt), msz(r.FinishedAt), r.Attempts, int64(seq), timedOut)
	if err != nil {
		return fmt.Errorf("store: result %s: %w", r.ResultID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		t.count(r.ExecID, outcome, 1)
		t.foldExecution(r)
		if t.added == nil {
			t.added = make(map[string]uint64)
		}
		t.added[class]++
		return nil
	}
	// Known result_id: the rare path.
	var oldExec, oldOutcome string
	var oldSeq int64
	if err := t.stmt("result.old").QueryRowContext(t.ctx, r.ResultID).Scan(&oldExec, &oldOutcome, &oldSeq); err != nil {
		return fmt.Errorf("store: result %s: %w", r.ResultID, err)
	}
	if int64(seq) <= oldSeq {
		return nil
	}
	if _, err := t.stmt("result.update").ExecContext(t.ctx,
		r.RequestID, r.ExecID, r.JobID, r.Version, r.ManifestID, r.PCID, r.ExitCode, r.Skipped, outcome,
		r.Stdout, r.Stderr, r.StdoutObject, r.StderrObject, ms(r.StartedAt), msz(r.FinishedAt),
		r.Attempts, int64(seq), timedOut, r.ResultID); err != nil {
		return fmt.Errorf("store: result %s: %w", r.ResultID, err)
	}
	t.foldExecution(r)
	if oldExec != r.ExecID || oldOutcome != outcome {
		t.count(oldExec, oldOutcome, -1)
		t.count(r.ExecID, outcome, 1)
	}
	return nil
}

// AddedResults returns how many results this transaction has stored for
// the first time so far, by class (Classify). A result_id already in the
// database (redelivered, republished, or a newer copy) is not among them,
// so a caller that adds these up after each commit counts every result
// once per database. Nil when there are none.
func (t *Tx) AddedResults() map[string]uint64 {
	if len(t.added) == 0 {
		return nil
	}
	return maps.Clone(t.added)
}

// AddStarted records that a PC is about to run an execution. Idempotent
// on result_id; the row stays after the result arrives (the PC is running
// only while no result shares its result_id).
func (t *Tx) AddStarted(e wire.EventStarted) error {
	if err := CheckStarted(e); err != nil {
		return err
	}
	_, err := t.stmt("started.insert").ExecContext(t.ctx, e.ResultID, e.RequestID, e.ExecID, e.PCID, msz(e.StartedAt), e.JobID)
	if err != nil {
		return fmt.Errorf("store: started %s: %w", e.ResultID, err)
	}
	return nil
}

// AddTimeline records a timeline event; the first event with a given
// (pc_id, source, event_record_id) wins. An event without a record id is
// keyed by its stream sequence, so a replay still finds it.
func (t *Tx) AddTimeline(e wire.ObsEvent, seq uint64) error {
	if err := CheckObs(e); err != nil {
		return err
	}
	rec := e.EventRecordID
	if rec == "" {
		rec = fmt.Sprintf("seq-%d", seq)
	}
	_, err := t.stmt("timeline.insert").ExecContext(t.ctx, e.PCID, e.Source, rec, e.Kind, msz(e.At), rawJSON(e.Payload), int64(seq))
	if err != nil {
		return fmt.Errorf("store: timeline %s/%s/%s: %w", e.PCID, e.Source, rec, err)
	}
	return nil
}

// ApplyInventory applies one inventory message. A full section replaces the
// latest copy (unless a newer collection is already stored) and appends to
// the history when its hash differs from the latest; an "unchanged" marker
// only advances confirmed_at, and only when its hash matches the stored one.
func (t *Tx) ApplyInventory(m wire.InventoryMessage) error {
	if err := CheckInventory(m); err != nil {
		return err
	}
	var curHash string
	var curCollected int64
	err := t.stmt("inventory.latest").QueryRowContext(t.ctx, m.PCID, m.Section).Scan(&curHash, &curCollected)
	have := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: inventory %s/%s: %w", m.PCID, m.Section, err)
	}
	at := msz(m.CollectedAt)
	if m.Unchanged {
		if !have || curHash != m.Hash {
			return nil // nothing to confirm, or a marker for another content
		}
		_, err := t.stmt("inventory.confirm").ExecContext(t.ctx, at, m.PCID, m.Section, m.Hash)
		return err
	}
	if have && at < curCollected {
		return nil // an older collection, redelivered after a newer one
	}
	if _, err := t.stmt("inventory.replace").ExecContext(t.ctx, m.PCID, m.Section, m.Hash, at, at, string(m.Data)); err != nil {
		return fmt.Errorf("store: inventory %s/%s: %w", m.PCID, m.Section, err)
	}
	if !have || curHash != m.Hash {
		if _, err := t.stmt("inventory.history").ExecContext(t.ctx, m.PCID, m.Section, m.Hash, at); err != nil {
			return fmt.Errorf("store: inventory history %s/%s: %w", m.PCID, m.Section, err)
		}
	}
	return nil
}

// AddAudit records an audit event under its AUDIT stream sequence.
func (t *Tx) AddAudit(e wire.AuditEvent, seq uint64) error {
	if err := CheckAudit(e); err != nil {
		return err
	}
	_, err := t.stmt("audit.insert").ExecContext(t.ctx, int64(seq), msz(e.At), e.Actor, e.Action, e.Target, rawJSON(e.Payload))
	if err != nil {
		return fmt.Errorf("store: audit %d: %w", seq, err)
	}
	return nil
}

// Heartbeat is a heartbeat as the backend received it.
type Heartbeat struct {
	wire.Heartbeat
	// SeenAt is when the backend received it (its clock, not the agent's):
	// last_seen and online/offline are judged on it, so an endpoint whose
	// clock is off still shows online. Zero means Heartbeat.At.
	SeenAt time.Time
}

func (h Heartbeat) seen() time.Time {
	if h.SeenAt.IsZero() {
		return h.At
	}
	return h.SeenAt
}

// UpsertHeartbeats writes the newest heartbeat of each PC in hbs. A
// heartbeat older than the stored one (by SeenAt) changes nothing, so
// last_seen never moves backwards.
func (t *Tx) UpsertHeartbeats(hbs []Heartbeat) error {
	newest := make(map[string]int, len(hbs))
	for i, h := range hbs {
		if h.PCID == "" || h.seen().IsZero() {
			continue
		}
		if j, ok := newest[h.PCID]; !ok || !h.seen().Before(hbs[j].seen()) {
			newest[h.PCID] = i
		}
	}
	idx := make([]int, 0, len(newest))
	for _, i := range newest {
		idx = append(idx, i)
	}
	slices.Sort(idx) // a stable write order
	st := t.stmt("agent.upsert")
	for _, i := range idx {
		h := hbs[i]
		seen := h.seen().UnixMilli()
		var cpu any
		if h.AgentCPUPct != nil {
			cpu = *h.AgentCPUPct
		}
		if _, err := st.ExecContext(t.ctx, h.PCID, h.Hostname, h.OSFamily, h.Arch, h.AgentVersion, h.MachineID,
			jsonList(h.Groups), jsonList(h.QuarantinedVersions), int64(h.AgentRSSBytes), cpu, h.OutboxDepth,
			ms(h.At), seen, seen, seen, interval(h.HeartbeatIntervalSecs),
			h.CommandSigning, jsonList(h.CommandKeyFingerprints)); err != nil {
			return fmt.Errorf("store: heartbeat %s: %w", h.PCID, err)
		}
	}
	return nil
}

// interval is the cadence a heartbeat declares; older agents do not, and
// the schema default (30 s) stands for them.
func interval(secs int) int {
	if secs <= 0 {
		return 30
	}
	return secs
}

func jsonList(v []string) string {
	if len(v) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// rawJSON is a JSON column value: NULL when absent.
func rawJSON(b json.RawMessage) any {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return string(b)
}
