package wire

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Subject prefixes and fixed subjects.
const (
	SubjectCommandsAll   = "commands.all"
	SubjectCommandsWild  = "commands.>"
	SubjectResultsWild   = "results.>"
	SubjectEventsWild    = "events.>"
	SubjectHeartbeatWild = "heartbeat.>"
	SubjectObsWild       = "obs.>"
	SubjectInventoryWild = "inventory.>"
	SubjectAuditWild     = "audit.>"

	// SubjectSurvey is a kanade extension of the reference protocol: every
	// agent answers a request here with a Heartbeat, so a CLI without a
	// backend can learn who is online before a broadcast and report who did
	// not answer. It has a different token count from agents.<pc>.ping, so
	// no pc_id can collide with it.
	SubjectSurvey = "agents.survey"
)

// SubjectCommandsPC is the subject of commands addressed to one PC.
func SubjectCommandsPC(pc string) string { return "commands.pc." + pc }

// SubjectCommandsGroup is the subject of commands addressed to a group.
func SubjectCommandsGroup(group string) string { return "commands.group." + group }

// SubjectResults is the subject an agent publishes its ExecResult on:
// results.<request_id>.<pc>.
//
// This is a kanade change to DESIGN.md §2, which has results.<request_id>:
// a subject without the pc_id cannot be bound to an agent's credentials, so
// agent A could publish a result in B's name. With the pc_id last, the
// agent role may publish results.*.<its pc> only, and readers refuse a
// result whose payload pc_id disagrees with the subject (internal/projector).
// Stream RESULTS captures results.>, so both forms are stored.
func SubjectResults(requestID, pc string) string { return "results." + requestID + "." + pc }

// SubjectResultsOfRequest matches every PC's result of one request in the
// current form (results.<request_id>.*). Collectors subscribe to it and to
// SubjectResultsLegacy, so results of agents older than this change still
// arrive.
func SubjectResultsOfRequest(requestID string) string { return "results." + requestID + ".*" }

// SubjectResultsLegacy is the subject agents before the per-PC form used:
// results.<request_id>. It carries no pc_id, so where roles are enforced
// (NATS nkeys) no agent credential may publish on it.
func SubjectResultsLegacy(requestID string) string { return "results." + requestID }

// PCFromResultSubject returns the pc token of results.<request_id>.<pc>;
// ok is false for the legacy two-token form and anything else.
func PCFromResultSubject(subject string) (pc string, ok bool) {
	rest, found := strings.CutPrefix(subject, "results.")
	if !found {
		return "", false
	}
	_, pc, found = strings.Cut(rest, ".")
	if !found || pc == "" || strings.Contains(pc, ".") {
		return "", false
	}
	return pc, true
}

// SubjectEventsStarted is the subject of the event published just before a spawn.
func SubjectEventsStarted(execID, pc string) string { return "events.started." + execID + "." + pc }

// SubjectHeartbeat is the subject of an agent's periodic heartbeat.
func SubjectHeartbeat(pc string) string { return "heartbeat." + pc }

// SubjectPing is the request/reply subject an agent answers with a fresh Heartbeat.
func SubjectPing(pc string) string { return "agents." + pc + ".ping" }

// SubjectKill is the subject that kills a running execution.
func SubjectKill(execID string) string { return "kill." + execID }

// SubjectKillWild matches SubjectKill of every exec_id: an exec_id is one
// subject token (ValidToken), so "*" covers them all and nothing else.
// An agent keeps one subscription here for its whole life instead of one
// per run.
const SubjectKillWild = "kill.*"

// SubjectAgentConfig is the request/reply subject for an agent's effective config.
func SubjectAgentConfig(pc string) string { return "agents." + pc + ".config" }

// SubjectInventory is the subject of one inventory section.
func SubjectInventory(pc, section string) string { return "inventory." + pc + "." + section }

// SubjectInventoryRefresh asks one agent (request/reply) to collect and
// publish its inventory now.
func SubjectInventoryRefresh(pc string) string { return "agents." + pc + ".inventory.refresh" }

// SubjectInventoryRefreshAll asks every agent to collect now; each one
// answers the request. kanade extension, like SubjectSurvey.
const SubjectInventoryRefreshAll = "fleet.inventory.refresh"

// SubjectHostPerf is the subject of periodic host performance samples.
func SubjectHostPerf(pc string) string { return "host_perf." + pc }

// SubjectObs is the subject of an agent's timeline events.
func SubjectObs(pc string) string { return "obs." + pc }

// SubjectLogsFetch is the request/reply subject returning the tail of an agent log.
func SubjectLogsFetch(pc string) string { return "logs.fetch." + pc }

// InboxPrefix is the reply-subject prefix of an agent's connection
// (_INBOX.<pc>): replies to its requests arrive under it, so a NATS role can
// allow an agent its own inbox and no other agent's.
func InboxPrefix(pc string) string { return "_INBOX." + pc }

// SubjectAudit is the subject of an audit event.
func SubjectAudit(actor, action, target string) string {
	s := "audit." + actor + "." + action
	if target != "" {
		s += "." + target
	}
	return s
}

// ValidToken reports whether s can be used as one token of a NATS subject:
// non-empty, at most 256 bytes of valid UTF-8, no dots, no wildcards, no
// whitespace or control characters. pc_ids, group names, request and exec
// ids are embedded in subjects verbatim, so each of them must pass this
// check before it is used. Invalid UTF-8 is refused because the same id
// also travels in JSON payloads, where it would be rewritten to U+FFFD and
// no longer match the subject.
func ValidToken(s string) bool {
	if s == "" || len(s) > 256 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '.', r == '*', r == '>', r <= ' ', r == 0x7f,
			unicode.IsSpace(r), unicode.IsControl(r):
			return false
		}
	}
	return true
}

// CheckToken returns a descriptive error when s is not a valid subject token.
func CheckToken(what, s string) error {
	if ValidToken(s) {
		return nil
	}
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	return fmt.Errorf("%s %q is not usable in a NATS subject: it must be 1-256 bytes of UTF-8 without '.', '*', '>', whitespace or control characters", what, s)
}

// PCFromSubject returns the pc token of subjects shaped prefix.<pc>[.rest].
func PCFromSubject(subject, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", false
	}
	pc, _, _ := strings.Cut(rest, ".")
	return pc, pc != ""
}
