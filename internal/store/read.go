package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// msTime converts a NOT NULL millisecond column back to a UTC time; 0 is
// the zero time (unknown).
func msTime(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// OfflineAfter is how many heartbeat intervals of silence make a PC offline.
const OfflineAfter = 3

// Agent is one row of agents, with its online state computed at read time.
type Agent struct {
	PCID                  string    `json:"pc_id"`
	Hostname              string    `json:"hostname,omitempty"`
	OSFamily              string    `json:"os_family,omitempty"`
	Arch                  string    `json:"arch,omitempty"`
	AgentVersion          string    `json:"agent_version,omitempty"`
	MachineID             string    `json:"machine_id,omitempty"`
	Groups                []string  `json:"groups"`
	QuarantinedVersions   []string  `json:"quarantined_versions"`
	RSSBytes              uint64    `json:"rss_bytes"`
	CPUPct                *float64  `json:"cpu_pct"`
	OutboxDepth           int       `json:"outbox_depth"`
	ReportedAt            time.Time `json:"reported_at,omitzero"`
	FirstSeen             time.Time `json:"first_seen"`
	LastSeen              time.Time `json:"last_seen"`
	HeartbeatIntervalSecs int       `json:"heartbeat_interval_secs"`
	OnlineSince           time.Time `json:"-"`
	// CommandSigning is whether the agent enforces signed commands, as its
	// last heartbeat said: one of the wire.CommandSigning* values, or ""
	// from an agent too old to report it.
	CommandSigning string `json:"command_signing"`
	// CommandKeyFingerprints are the ids of the command keys the agent
	// trusts; empty, never nil, when it trusts none or does not report them.
	CommandKeyFingerprints []string `json:"command_key_fingerprints"`

	// Online: the last heartbeat is within OfflineAfter intervals.
	Online bool `json:"online"`
	// Since is when the current state began: the first heartbeat after the
	// last gap when online, the last heartbeat when offline.
	Since time.Time `json:"since"`
}

// OfflineAt is when the PC turns (or turned) offline without another
// heartbeat.
func (a Agent) OfflineAt() time.Time {
	return a.LastSeen.Add(OfflineAfter * time.Duration(a.HeartbeatIntervalSecs) * time.Second)
}

// State computes Online and Since at now.
func (a *Agent) State(now time.Time) {
	a.Online = now.Before(a.OfflineAt())
	if a.Online {
		a.Since = a.OnlineSince
	} else {
		a.Since = a.LastSeen
	}
}

// AgentFilter selects and orders agents. Zero values select everything.
type AgentFilter struct {
	// Query matches a substring of pc_id, hostname or machine_id
	// (case-insensitive for ASCII).
	Query   string
	Online  *bool
	Version string
	OS      string
	Group   string
	// CommandSigning selects the agents in one signing state: a
	// wire.CommandSigning* value, or CommandSigningUnknown for the agents
	// that do not report one. Anything else is ErrInvalid.
	CommandSigning string
	// Sort is one of pc_id (default), hostname, last_seen, agent_version,
	// os_family; a leading '-' sorts descending. pc_id breaks ties.
	Sort string
	// Limit defaults to 100 and is capped at 10,000.
	Limit, Offset int
}

var agentSorts = map[string]string{
	"pc_id":         "pc_id",
	"hostname":      "hostname",
	"last_seen":     "last_seen",
	"agent_version": "agent_version",
	"os_family":     "os_family",
}

// CommandSigningUnknown is the AgentFilter.CommandSigning value that
// selects agents with no command_signing: too old to report it.
const CommandSigningUnknown = "unknown"

// commandSigningFilters are the values AgentFilter.CommandSigning accepts.
var commandSigningFilters = []string{wire.CommandSigningOff, wire.CommandSigningEnforced, wire.CommandSigningNoKeys,
	wire.CommandSigningFailClosed, CommandSigningUnknown}

const agentCols = `pc_id, hostname, os_family, arch, agent_version, machine_id, groups,
	quarantined_versions, rss_bytes, cpu_pct, outbox_depth, reported_at, first_seen, last_seen,
	online_since, heartbeat_interval_secs, command_signing, command_key_fingerprints`

// offlineAtExpr must match the agents_offline_at index expression exactly.
const offlineAtExpr = `(last_seen + 3000 * heartbeat_interval_secs)`

func scanAgent(sc interface{ Scan(...any) error }, now time.Time) (Agent, error) {
	var a Agent
	var groups, quarantined, keys string
	var cpu sql.NullFloat64
	var reported sql.NullInt64
	var rss, first, last, since int64
	if err := sc.Scan(&a.PCID, &a.Hostname, &a.OSFamily, &a.Arch, &a.AgentVersion, &a.MachineID, &groups,
		&quarantined, &rss, &cpu, &a.OutboxDepth, &reported, &first, &last, &since, &a.HeartbeatIntervalSecs,
		&a.CommandSigning, &keys); err != nil {
		return a, err
	}
	a.RSSBytes = uint64(rss)
	if cpu.Valid {
		v := cpu.Float64
		a.CPUPct = &v
	}
	a.ReportedAt = fromMS(reported)
	a.FirstSeen, a.LastSeen, a.OnlineSince = msTime(first), msTime(last), msTime(since)
	a.Groups, a.QuarantinedVersions = decodeList(groups), decodeList(quarantined)
	a.CommandKeyFingerprints = decodeList(keys)
	a.State(now)
	return a, nil
}

func decodeList(s string) []string {
	out := []string{}
	_ = json.Unmarshal([]byte(s), &out)
	return out
}

// likeEscape escapes LIKE's wildcards for use with ESCAPE '\'.
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// ListAgents returns one page of agents and the number of agents matching
// the filter. Every filter and sort is served by an index except Query
// (a substring), Group (a JSON array) and CommandSigning (no index, see
// migration 00006); they scan at most the agents table, a few
// milliseconds at 10,000 agents.
func (s *Store) ListAgents(ctx context.Context, f AgentFilter) ([]Agent, int, error) {
	now := s.now()
	var where []string
	var args []any
	if f.Query != "" {
		q := likeEscape(f.Query)
		where = append(where, `(pc_id LIKE ? ESCAPE '\' OR hostname LIKE ? ESCAPE '\' OR machine_id LIKE ? ESCAPE '\')`)
		args = append(args, q, q, q)
	}
	if f.Online != nil {
		if *f.Online {
			where = append(where, offlineAtExpr+` > ?`)
		} else {
			where = append(where, offlineAtExpr+` <= ?`)
		}
		args = append(args, now.UnixMilli())
	}
	if f.Version != "" {
		where = append(where, `agent_version = ?`)
		args = append(args, f.Version)
	}
	if f.OS != "" {
		where = append(where, `os_family = ?`)
		args = append(args, f.OS)
	}
	if f.Group != "" {
		where = append(where, `EXISTS (SELECT 1 FROM json_each(agents.groups) WHERE json_each.value = ?)`)
		args = append(args, f.Group)
	}
	if f.CommandSigning != "" {
		if !slices.Contains(commandSigningFilters, f.CommandSigning) {
			return nil, 0, invalid("unknown command_signing %q (%s)", f.CommandSigning, strings.Join(commandSigningFilters, ", "))
		}
		v := f.CommandSigning
		if v == CommandSigningUnknown {
			v = ""
		}
		where = append(where, `command_signing = ?`)
		args = append(args, v)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	sortKey, desc := strings.CutPrefix(f.Sort, "-")
	if sortKey == "" {
		sortKey = "pc_id"
	}
	col, ok := agentSorts[sortKey]
	if !ok {
		return nil, 0, invalid("unknown sort %q (pc_id, hostname, last_seen, agent_version, os_family, optionally prefixed by '-')", f.Sort)
	}
	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	order := col + " " + dir
	if col != "pc_id" {
		order += ", pc_id " + dir
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10_000)
	offset := max(f.Offset, 0)

	var total int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM agents`+cond, args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+agentCols+` FROM agents`+cond+` ORDER BY `+order+` LIMIT ? OFFSET ?`,
		append(args, limit, offset)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	out := make([]Agent, 0, min(limit, 256))
	for rows.Next() {
		a, err := scanAgent(rows, now)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, a)
	}
	return out, total, rows.Err()
}

// GetAgent returns one agent, or ErrNotFound.
func (s *Store) GetAgent(ctx context.Context, pcID string) (Agent, error) {
	a, err := scanAgent(s.r.QueryRowContext(ctx, `SELECT `+agentCols+` FROM agents WHERE pc_id = ?`, pcID), s.now())
	if errors.Is(err, sql.ErrNoRows) {
		return Agent{}, ErrNotFound
	}
	return a, err
}

// AgentCounts returns how many agents are online and offline now.
func (s *Store) AgentCounts(ctx context.Context) (online, offline int, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM agents WHERE `+offlineAtExpr+` > ?1),
		(SELECT count(*) FROM agents WHERE `+offlineAtExpr+` <= ?1)`, s.now().UnixMilli()).Scan(&online, &offline)
	return online, offline, err
}

// Result is one row of results.
type Result struct {
	ResultID     string    `json:"result_id"`
	RequestID    string    `json:"request_id"`
	ExecID       string    `json:"exec_id"`
	JobID        string    `json:"job_id,omitempty"`
	Version      string    `json:"version,omitempty"`
	ManifestID   string    `json:"manifest_id,omitempty"`
	PCID         string    `json:"pc_id"`
	ExitCode     int       `json:"exit_code"`
	Skipped      bool      `json:"skipped"`
	Outcome      string    `json:"outcome"`
	Stdout       string    `json:"stdout"`
	Stderr       string    `json:"stderr"`
	StdoutObject string    `json:"stdout_object,omitempty"`
	StderrObject string    `json:"stderr_object,omitempty"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at"`
	Attempts     int       `json:"attempts,omitempty"`
	StreamSeq    uint64    `json:"stream_seq"`
	// TimedOut: the run hit its timeout and was killed (Classify says
	// timed_out; Outcome is then killed). False from agents that do not
	// report timeouts, and for rows stored before migration 00004.
	TimedOut bool `json:"timed_out"`
}

// ResultFilter selects results, newest first (by finished_at, then
// result_id). Before/BeforeID is the keyset cursor: pass the FinishedAt and
// ResultID of the last row of the previous page.
type ResultFilter struct {
	ExecID, PCID string
	// Limit defaults to 100 and is capped at 1,000.
	Limit    int
	Before   time.Time
	BeforeID string
}

// resultCols are the columns ListResults reads, and the results table's
// fingerprint (retention.go): a column missing here would not be compared
// when a rebuilt database is verified.
const resultCols = `result_id, request_id, exec_id, job_id, version, manifest_id, pc_id, exit_code,
	skipped, outcome, timed_out, stdout, stderr, stdout_object, stderr_object, started_at, finished_at, attempts, stream_seq`

// ListResults returns results, newest first, with their output.
func (s *Store) ListResults(ctx context.Context, f ResultFilter) ([]Result, error) {
	var where []string
	var args []any
	if f.ExecID != "" {
		where = append(where, `exec_id = ?`)
		args = append(args, f.ExecID)
	}
	if f.PCID != "" {
		where = append(where, `pc_id = ?`)
		args = append(args, f.PCID)
	}
	if !f.Before.IsZero() {
		if f.BeforeID != "" {
			where = append(where, `(finished_at, result_id) < (?, ?)`)
			args = append(args, f.Before.UnixMilli(), f.BeforeID)
		} else {
			where = append(where, `finished_at < ?`)
			args = append(args, f.Before.UnixMilli())
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q := `SELECT ` + resultCols + ` FROM results`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += ` ORDER BY finished_at DESC, result_id DESC LIMIT ?`
	rows, err := s.r.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Result
	for rows.Next() {
		var r Result
		var started sql.NullInt64
		var finished, seq int64
		if err := rows.Scan(&r.ResultID, &r.RequestID, &r.ExecID, &r.JobID, &r.Version, &r.ManifestID, &r.PCID,
			&r.ExitCode, &r.Skipped, &r.Outcome, &r.TimedOut, &r.Stdout, &r.Stderr, &r.StdoutObject, &r.StderrObject,
			&started, &finished, &r.Attempts, &seq); err != nil {
			return nil, err
		}
		r.StartedAt, r.FinishedAt, r.StreamSeq = fromMS(started), msTime(finished), uint64(seq)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Counters are an execution's totals. Running is computed at read time
// (started events without a result).
type Counters struct {
	ExecID    string `json:"exec_id"`
	Results   int    `json:"results"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	Killed    int    `json:"killed"`
	Running   int    `json:"running"`
}

// ExecutionCounters returns an execution's totals (all zero when nothing
// is known about it).
func (s *Store) ExecutionCounters(ctx context.Context, execID string) (Counters, error) {
	c := Counters{ExecID: execID}
	err := s.r.QueryRowContext(ctx, `SELECT
		coalesce((SELECT results FROM exec_counters WHERE exec_id = ?1), 0),
		coalesce((SELECT succeeded FROM exec_counters WHERE exec_id = ?1), 0),
		coalesce((SELECT failed FROM exec_counters WHERE exec_id = ?1), 0),
		coalesce((SELECT skipped FROM exec_counters WHERE exec_id = ?1), 0),
		coalesce((SELECT killed FROM exec_counters WHERE exec_id = ?1), 0),
		(SELECT count(*) FROM started st WHERE st.exec_id = ?1
			AND NOT EXISTS (SELECT 1 FROM results r WHERE r.result_id = st.result_id))`, execID).
		Scan(&c.Results, &c.Succeeded, &c.Failed, &c.Skipped, &c.Killed, &c.Running)
	return c, err
}

// PCState is where one PC stands in an execution.
type PCState struct {
	PCID      string `json:"pc_id"`
	ResultID  string `json:"result_id"`
	RequestID string `json:"request_id"`
	// State is running, or the result's outcome (succeeded, failed,
	// skipped, killed).
	State      string    `json:"state"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// TimedOut: the result is a timeout (State is then killed).
	TimedOut bool `json:"timed_out"`
}

// ExecutionPCs returns the state of every PC known to have started or
// finished an execution, ordered by pc_id. A PC is running when its
// started event is known and its result is not, whichever arrived first.
func (s *Store) ExecutionPCs(ctx context.Context, execID string) ([]PCState, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT r.pc_id, r.result_id, r.request_id, r.outcome, r.timed_out, r.exit_code,
			coalesce(r.started_at, st.started_at), r.finished_at
		FROM results r LEFT JOIN started st ON st.result_id = r.result_id
		WHERE r.exec_id = ?1
		UNION ALL
		SELECT st.pc_id, st.result_id, st.request_id, 'running', 0, NULL, st.started_at, NULL
		FROM started st
		WHERE st.exec_id = ?1 AND NOT EXISTS (SELECT 1 FROM results r WHERE r.result_id = st.result_id)
		ORDER BY 1, 2`, execID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PCState
	for rows.Next() {
		var p PCState
		var code, started, finished sql.NullInt64
		if err := rows.Scan(&p.PCID, &p.ResultID, &p.RequestID, &p.State, &p.TimedOut, &code, &started, &finished); err != nil {
			return nil, err
		}
		if code.Valid {
			c := int(code.Int64)
			p.ExitCode = &c
		}
		p.StartedAt, p.FinishedAt = fromMS(started), fromMS(finished)
		out = append(out, p)
	}
	return out, rows.Err()
}

// TimelineEvent is one row of timeline.
type TimelineEvent struct {
	PCID          string          `json:"pc_id"`
	Source        string          `json:"source"`
	EventRecordID string          `json:"event_record_id"`
	Kind          string          `json:"kind"`
	At            time.Time       `json:"at"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	StreamSeq     uint64          `json:"stream_seq"`
}

// TimelineFilter selects timeline events, newest first.
type TimelineFilter struct {
	PCID, Kind string
	// Limit defaults to 100 and is capped at 1,000.
	Limit int
	// Before, when set, returns events strictly older.
	Before time.Time
	// Cursor is the Next of the previous page (TimelinePage); empty for
	// the first page. A malformed cursor is ErrInvalid.
	Cursor string
}

// TimelinePage is one page of ListTimeline.
type TimelinePage struct {
	Events []TimelineEvent
	// Next is the Cursor of the following page; empty on the last page.
	Next string
}

// Timeline returns timeline events, newest first: the Events of
// ListTimeline.
func (s *Store) Timeline(ctx context.Context, f TimelineFilter) ([]TimelineEvent, error) {
	page, err := s.ListTimeline(ctx, f)
	return page.Events, err
}

// ListTimeline returns one page of timeline events, newest first (by at,
// then insertion order), with keyset pagination: the cursor is the (at,
// id) of the page's last row, so a page is one range scan of timeline_at
// (or timeline_pc_at, timeline_kind_at with a filter) however deep it is,
// and events projected meanwhile neither shift nor repeat the next page.
func (s *Store) ListTimeline(ctx context.Context, f TimelineFilter) (TimelinePage, error) {
	var where []string
	var args []any
	if f.PCID != "" {
		where = append(where, `pc_id = ?`)
		args = append(args, f.PCID)
	}
	if f.Kind != "" {
		where = append(where, `kind = ?`)
		args = append(args, f.Kind)
	}
	if !f.Before.IsZero() {
		where = append(where, `at < ?`)
		args = append(args, f.Before.UnixMilli())
	}
	if f.Cursor != "" {
		at, key, err := decodeCursor("timeline", f.Cursor)
		if err != nil {
			return TimelinePage{}, err
		}
		id, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			return TimelinePage{}, invalid("malformed timeline cursor %q: pass back the next of the previous page", f.Cursor)
		}
		where = append(where, `(at, id) < (?, ?)`)
		args = append(args, at, id)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q := `SELECT id, pc_id, source, event_record_id, kind, at, payload, stream_seq FROM timeline`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// One row more than the page tells whether another page follows.
	q += ` ORDER BY at DESC, id DESC LIMIT ?`
	rows, err := s.r.QueryContext(ctx, q, append(args, limit+1)...)
	if err != nil {
		return TimelinePage{}, fmt.Errorf("store: timeline: %w", err)
	}
	defer rows.Close()
	var page TimelinePage
	var lastAt, lastID int64
	for rows.Next() {
		var e TimelineEvent
		var id, at, seq int64
		var payload sql.NullString
		if err := rows.Scan(&id, &e.PCID, &e.Source, &e.EventRecordID, &e.Kind, &at, &payload, &seq); err != nil {
			return TimelinePage{}, fmt.Errorf("store: timeline: %w", err)
		}
		if len(page.Events) == limit {
			page.Next = encodeCursor(lastAt, strconv.FormatInt(lastID, 10))
			break
		}
		e.At, e.StreamSeq = msTime(at), uint64(seq)
		if payload.Valid {
			e.Payload = json.RawMessage(payload.String)
		}
		lastAt, lastID = at, id
		page.Events = append(page.Events, e)
	}
	if err := rows.Err(); err != nil {
		return TimelinePage{}, fmt.Errorf("store: timeline: %w", err)
	}
	return page, nil
}

// InventorySection is the latest copy of one section of a PC.
type InventorySection struct {
	PCID        string          `json:"pc_id"`
	Section     string          `json:"section"`
	Hash        string          `json:"hash"`
	CollectedAt time.Time       `json:"collected_at"`
	ConfirmedAt time.Time       `json:"confirmed_at"`
	Data        json.RawMessage `json:"data"`
}

// InventoryLatest returns a PC's latest sections, ordered by section.
func (s *Store) InventoryLatest(ctx context.Context, pcID string) ([]InventorySection, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT pc_id, section, hash, collected_at, confirmed_at, data
		FROM inventory_latest WHERE pc_id = ? ORDER BY section`, pcID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []InventorySection
	for rows.Next() {
		var v InventorySection
		var collected, confirmed int64
		var data string
		if err := rows.Scan(&v.PCID, &v.Section, &v.Hash, &collected, &confirmed, &data); err != nil {
			return nil, err
		}
		v.CollectedAt, v.ConfirmedAt, v.Data = msTime(collected), msTime(confirmed), json.RawMessage(data)
		out = append(out, v)
	}
	return out, rows.Err()
}

// InventoryChange is one row of a section's change history.
type InventoryChange struct {
	PCID        string    `json:"pc_id"`
	Section     string    `json:"section"`
	Hash        string    `json:"hash"`
	CollectedAt time.Time `json:"collected_at"`
}

// InventoryHistory returns a PC's section changes, newest first; an empty
// section means every section.
func (s *Store) InventoryHistory(ctx context.Context, pcID, section string, limit int) ([]InventoryChange, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT pc_id, section, hash, collected_at FROM inventory_history
		WHERE pc_id = ?1 AND (?2 = '' OR section = ?2) ORDER BY collected_at DESC, id DESC LIMIT ?3`,
		pcID, section, min(limit, 1000))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []InventoryChange
	for rows.Next() {
		var c InventoryChange
		var at int64
		if err := rows.Scan(&c.PCID, &c.Section, &c.Hash, &at); err != nil {
			return nil, err
		}
		c.CollectedAt = msTime(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// AuditEntry is one row of audit.
type AuditEntry struct {
	Seq     uint64          `json:"seq"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Target  string          `json:"target,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// AuditFilter selects audit entries, newest first (by seq).
type AuditFilter struct {
	// Action, Target and Actor, when not empty, match exactly.
	Action, Target, Actor string
	// Before, when not 0, returns entries with a smaller seq: the Next of
	// the previous page.
	Before uint64
	// Limit defaults to 100 and is capped at 1,000.
	Limit int
}

// AuditPage is one page of ListAudit.
type AuditPage struct {
	Entries []AuditEntry
	// Next is the Before of the following page; 0 on the last page.
	Next uint64
}

// AuditList returns the newest audit entries, newest first. limit defaults
// to 100 and is capped at 1,000.
func (s *Store) AuditList(ctx context.Context, limit int) ([]AuditEntry, error) {
	page, err := s.ListAudit(ctx, AuditFilter{Limit: limit})
	return page.Entries, err
}

// ListAudit returns one page of audit entries, newest first, with keyset
// pagination on seq (the AUDIT stream sequence, the primary key). Each
// filter is served by its own index (migration 00005), so finding the
// newest entry of one action on one target — "who ran this execution" —
// does not scan a year of audit.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) (AuditPage, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"action", f.Action}, {"target", f.Target}, {"actor", f.Actor}} {
		if c.v != "" {
			where = append(where, c.col+` = ?`)
			args = append(args, c.v)
		}
	}
	if f.Before > 0 {
		where = append(where, `seq < ?`)
		args = append(args, int64(min(f.Before, math.MaxInt64)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q := `SELECT seq, at, actor, action, target, payload FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// One row more than the page tells whether another page follows.
	q += ` ORDER BY seq DESC LIMIT ?`
	rows, err := s.r.QueryContext(ctx, q, append(args, limit+1)...)
	if err != nil {
		return AuditPage{}, fmt.Errorf("store: audit: %w", err)
	}
	defer rows.Close()
	var page AuditPage
	for rows.Next() {
		var e AuditEntry
		var seq, at int64
		var payload sql.NullString
		if err := rows.Scan(&seq, &at, &e.Actor, &e.Action, &e.Target, &payload); err != nil {
			return AuditPage{}, fmt.Errorf("store: audit: %w", err)
		}
		if len(page.Entries) == limit {
			page.Next = page.Entries[limit-1].Seq
			break
		}
		e.Seq, e.At = uint64(seq), msTime(at)
		if payload.Valid {
			e.Payload = json.RawMessage(payload.String)
		}
		page.Entries = append(page.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return AuditPage{}, fmt.Errorf("store: audit: %w", err)
	}
	return page, nil
}

// Count returns the number of rows of a projection table (metrics, tests).
func (s *Store) Count(ctx context.Context, table string) (int64, error) {
	if _, ok := fingerprints[table]; !ok {
		return 0, invalid("unknown table %q", table)
	}
	var n int64
	err := s.r.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s`, table)).Scan(&n)
	return n, err
}
