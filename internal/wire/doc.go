// Package wire is the kanade protocol contract: NATS subject names, JetStream
// resource names, the JSON messages exchanged by agents, the backend and the
// CLI, and the exit codes of synthetic results.
//
// It is shared by every program (the agent included), so it depends on the
// standard library only. Decoders are lenient in the way DESIGN.md §2 asks:
// unknown fields are ignored, missing fields take their defaults, and a
// Command's exec_id may arrive as job_id. Encoders omit empty optional fields.
package wire
