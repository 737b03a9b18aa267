// Package natsauth is kanade's identity and authorisation model on NATS:
// three roles — agent (one per pc_id), backend and operator — each an NKey
// user, and the one table of subjects each role may publish and subscribe.
//
// The embedded broker (internal/broker), the server's enrolment of agents
// and the nats-server configuration rendered for an external cluster
// (RenderConfig) are all built from this table, so they cannot disagree.
// What the table guarantees, enforced by nats-server itself:
//
//   - An agent credential can publish only on subjects that carry its own
//     pc_id (results.*.<pc>, events.started.*.<pc>, heartbeat.<pc>,
//     host_perf.<pc>, inventory.<pc>.*, obs.<pc>), replies to requests it
//     received, and read-only JetStream API calls on the resources it uses,
//     scoped to its own keys where the API puts the key in the subject.
//     It cannot publish a command or a kill, write KV, or read another
//     agent's inbox (replies to it arrive under _INBOX.<pc>).
//   - An operator credential (the CLI) may do everything but publish on
//     the agents' subjects or the audit log, so it cannot forge agent data.
//   - The backend may do everything: it bootstraps every resource and
//     writes the audit log.
//
// The package depends on nats.go and nkeys, never on nats-server: the agent
// links it for its connection option.
package natsauth

import (
	"fmt"
	"slices"

	"github.com/kanade-project/kanade/internal/wire"
)

// Role is what a NATS user is allowed to do.
type Role string

// The roles.
const (
	RoleAgent    Role = "agent"
	RoleBackend  Role = "backend"
	RoleOperator Role = "operator"
)

// SubjectRule lists subjects (wildcards allowed) that are allowed, and
// exceptions that are denied. An empty Allow allows nothing.
type SubjectRule struct {
	Allow []string
	Deny  []string
}

// Permissions is what one user may publish and subscribe.
type Permissions struct {
	Publish   SubjectRule
	Subscribe SubjectRule
	// AllowResponses lets the user publish one reply to each request it
	// received (ping, config, survey), and JetStream flow-control
	// replies, without a publish right on the requester's inbox.
	AllowResponses bool
}

// All is the subject wildcard matching everything.
const All = ">"

// agentSubjects are the subjects agents publish their own data on: no role
// but the agent of that PC may publish them.
var agentSubjects = []string{
	wire.SubjectResultsWild,
	wire.SubjectEventsWild,
	wire.SubjectHeartbeatWild,
	"host_perf.>",
	wire.SubjectInventoryWild,
	wire.SubjectObsWild,
}

// BackendPermissions: every right.
func BackendPermissions() Permissions {
	return Permissions{
		Publish:   SubjectRule{Allow: []string{All}},
		Subscribe: SubjectRule{Allow: []string{All}},
	}
}

// OperatorPermissions: every right but publishing the agents' data or the
// audit log (the backend writes it, after checking who asked).
func OperatorPermissions() Permissions {
	return Permissions{
		Publish:   SubjectRule{Allow: []string{All}, Deny: append(slices.Clone(agentSubjects), wire.SubjectAuditWild)},
		Subscribe: SubjectRule{Allow: []string{All}},
	}
}

// jsAPI is the JetStream API prefix.
const jsAPI = "$JS.API."

func streamInfo(stream string) string { return jsAPI + "STREAM.INFO." + stream }

// directGet is the direct get of the last message on subject: nats.go puts
// the subject in the request subject when the stream allows direct gets,
// which is what lets a permission name the keys an agent may read.
func directGet(stream, subject string) string { return jsAPI + "DIRECT.GET." + stream + "." + subject }

func kvKey(bucket, key string) string { return "$KV." + bucket + "." + key }

// AgentPermissions are the rights of the agent of pc. The list was found
// by running every agent flow (commands live and replayed, results with
// output overflow, heartbeat, ping, survey, config and group watch,
// inventory, self-update download) under it and reading the server's
// permission violations; TestAgentRoleAllowsEveryAgentFlow keeps it so.
func AgentPermissions(pc string) Permissions {
	cfg, groups := wire.BucketAgentConfig, wire.BucketAgentGroups
	kvCfg, kvGroups := "KV_"+cfg, "KV_"+groups
	kvPin, kvStatus := "KV_"+wire.BucketScriptCurrent, "KV_"+wire.BucketScriptStatus
	releases, output := "OBJ_"+wire.ObjectAgentReleases, "OBJ_"+wire.ObjectResultOutput
	return Permissions{
		Subscribe: SubjectRule{Allow: []string{
			wire.SubjectCommandsAll,
			wire.SubjectCommandsPC(pc),
			wire.SubjectCommandsGroup("*"),
			wire.SubjectKillWild,
			"agents." + pc + ".>", // ping, config, inventory refresh
			wire.SubjectSurvey,
			wire.SubjectInventoryRefreshAll,
			wire.SubjectLogsFetch(pc),
			// Config changes: exactly the keys configsync watches.
			kvKey(cfg, wire.ConfigKeyGlobal),
			kvKey(cfg, wire.ConfigKeyPC(pc)),
			kvKey(cfg, wire.ConfigKeyGroup("*")),
			kvKey(groups, pc),
			// Replies to its own requests only.
			wire.InboxPrefix(pc) + ".>",
		}},
		Publish: SubjectRule{Allow: []string{
			wire.SubjectResults("*", pc),
			wire.SubjectEventsStarted("*", pc),
			wire.SubjectHeartbeat(pc),
			wire.SubjectHostPerf(pc),
			wire.SubjectInventory(pc, "*"),
			wire.SubjectObs(pc),

			// Command replay: the newest command on its own subjects.
			streamInfo(wire.StreamExec),
			directGet(wire.StreamExec, wire.SubjectCommandsAll),
			directGet(wire.StreamExec, wire.SubjectCommandsPC(pc)),
			directGet(wire.StreamExec, wire.SubjectCommandsGroup("*")),
			// Fleet config and groups: its own keys.
			streamInfo(kvCfg),
			directGet(kvCfg, kvKey(cfg, wire.ConfigKeyGlobal)),
			directGet(kvCfg, kvKey(cfg, wire.ConfigKeyPC(pc))),
			directGet(kvCfg, kvKey(cfg, wire.ConfigKeyGroup("*"))),
			streamInfo(kvGroups),
			directGet(kvGroups, kvKey(groups, pc)),
			// Version pins and revocations (per job, not per PC).
			streamInfo(kvPin),
			directGet(kvPin, kvKey(wire.BucketScriptCurrent, "*")),
			streamInfo(kvStatus),
			directGet(kvStatus, kvKey(wire.BucketScriptStatus, "*")),
			// Self-update: read releases (an ordered consumer per
			// download, deleted when it ends).
			streamInfo(releases),
			directGet(releases, "$O."+wire.ObjectAgentReleases+".M.*"),
			jsAPI + "CONSUMER.CREATE." + releases + ".>",
			jsAPI + "CONSUMER.DELETE." + releases + ".>",
			// Output above the inline limit: write objects. Object names
			// are encoded in the subject, so they cannot be scoped to the
			// PC; purging (which nats.go attempts after overwriting an
			// object, ignoring its error) is not granted.
			streamInfo(output),
			directGet(output, "$O."+wire.ObjectResultOutput+".M.*"),
			"$O." + wire.ObjectResultOutput + ".C.*",
			"$O." + wire.ObjectResultOutput + ".M.*",
		}},
		AllowResponses: true,
	}
}

// User is one NKey identity of the system.
type User struct {
	Role Role
	// PC is the agent's pc_id (RoleAgent only).
	PC string
	// PublicKey is the user's public NKey (U…).
	PublicKey string
}

// Permissions returns the rights of u's role.
func (u User) Permissions() Permissions {
	switch u.Role {
	case RoleBackend:
		return BackendPermissions()
	case RoleOperator:
		return OperatorPermissions()
	default:
		return AgentPermissions(u.PC)
	}
}

// Check reports whether u is complete: a known role, a valid public user
// key, and for an agent a pc_id usable in subjects.
func (u User) Check() error {
	switch u.Role {
	case RoleBackend, RoleOperator:
		if u.PC != "" {
			return fmt.Errorf("natsauth: the %s role has no pc_id (got %q)", u.Role, u.PC)
		}
	case RoleAgent:
		if err := wire.CheckToken("agent pc_id", u.PC); err != nil {
			return fmt.Errorf("natsauth: %w", err)
		}
	default:
		return fmt.Errorf("natsauth: unknown role %q (expected agent, backend or operator)", u.Role)
	}
	return CheckPublicKey(u.PublicKey)
}

// Name is how logs and the rendered configuration name u: "backend",
// "operator" or "agent <pc>".
func (u User) Name() string {
	if u.Role == RoleAgent {
		return "agent " + u.PC
	}
	return string(u.Role)
}
