// Package wire is the kanade protocol contract: NATS subject names, JetStream
// resource names, the JSON messages exchanged by agents, the backend and the
// CLI, and the exit codes of synthetic results.
//
// It is shared by every program (the agent included), so it depends on the
// standard library only. Decoders are lenient in the way DESIGN.md §2 asks:
// unknown fields are ignored, missing fields take their defaults, and a
// Command's exec_id may arrive as job_id. Encoders omit empty optional fields.
//
// One change to DESIGN.md §2: results travel on results.<request_id>.<pc>
// (SubjectResults), not results.<request_id>. Every subject an agent
// publishes on now ends in (or carries) its pc_id, so NATS permissions can
// bind an agent credential to its own subjects, and readers refuse a message
// whose payload pc_id disagrees with its subject. Collectors still accept
// the old two-token form (SubjectResultsLegacy) from older agents.
package wire
