package wire

// Exit codes of synthetic results (DESIGN.md §2). Every one is published with
// skipped set, except ExitRefusedSignature, so that pending counts clear.
const (
	// ExitKilled is reported for a run that was killed or timed out; the
	// reason is appended to stderr.
	ExitKilled = -1
	// ExitInvalidCommand answers a command that could not be decoded or is
	// incomplete (for example an empty script). kanade extension.
	ExitInvalidCommand = 122
	// ExitRefusedSignature: the command's signature did not verify.
	ExitRefusedSignature = 123
	// ExitVersionPin: the command's version differs from script_current.
	ExitVersionPin = 124
	// ExitDeadlinePassed: deadline_at passed before the run could start.
	ExitDeadlinePassed = 125
	// ExitRevoked: the job is REVOKED in script_status.
	ExitRevoked = 126
	// ExitStale: staleness mode strict and the cached KV is too old.
	ExitStale = 127
	// ExitSpawnFailed: the shell could not be started. kanade extension.
	ExitSpawnFailed = 128
	// ExitOutcomeUnknown: the agent crashed while the command was running, so
	// whether it ran to completion is unknown; it is never launched again.
	// kanade extension.
	ExitOutcomeUnknown = 129
)
