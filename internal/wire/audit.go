package wire

import (
	"encoding/json"
	"time"
)

// AuditEvent is published by the backend on audit.<actor>.<action>[.<target>]
// (stream AUDIT) for every mutation: who did what to which object, with the
// request's relevant payload.
type AuditEvent struct {
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Target  string          `json:"target,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}
