// Package agent is the kanade endpoint daemon: it connects to the broker
// (retrying forever, so it starts fine before the broker exists), listens
// for commands addressed to it, runs them, and publishes each outcome to
// JetStream, waiting for the broker's acknowledgement. It also publishes
// heartbeats and answers pings.
//
// Guarantees:
//   - Only commands on the agent's own subjects are considered: commands.all,
//     commands.pc.<pc> and commands.group.<g> of a group it is a member of
//     now; anything else is dropped without an answer.
//   - With signed commands required and a non-empty key ring (from the
//     endpoint's own config, never from KV), a command runs only if its
//     signature verifies over the exact bytes received, for this target,
//     within its validity; otherwise it is answered with exit 123 and a
//     stderr saying what to fix. Live and replayed commands are checked
//     alike, before parsing. A ring that cannot be read at start refuses
//     everything (fail closed); one that fails to reload leaves the
//     previous ring in force.
//   - A command that cannot be decoded or is incomplete is logged with its
//     subject and, when its request_id can be recovered, answered with an
//     ExitInvalidCommand result; the agent keeps running.
//   - Every result carries a result_id that is also its JetStream message id,
//     so a publish retried after a lost acknowledgement is stored once.
//   - Output above wire.OutputInlineLimit is uploaded to the result_output
//     object store and referenced from the result, because the broker
//     refuses messages larger than its max_payload.
package agent
