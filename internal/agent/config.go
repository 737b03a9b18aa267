package agent

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/configsync"
	"github.com/kanade-project/kanade/internal/wire"
)

// groupSubs are the live subscriptions to commands.group.<g>.
type groupSubs struct {
	mu   sync.Mutex
	subs map[string]*nats.Subscription
}

// groups returns the groups the agent currently listens to, sorted.
func (g *groupSubs) groups() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.subs))
	for name := range g.subs {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// applyConfigLoop hands every config change to the subsystems that depend
// on it: group subscriptions (and their replay), the run-slot limit. The
// heartbeat loop watches the state itself.
func (a *Agent) applyConfigLoop(ctx context.Context) {
	defer a.unsubscribeGroups()
	for {
		st, changed := a.cfgsync.State()
		a.slots.setLimit(st.Resolution.Effective.MaxLocalConcurrent)
		if added := a.syncGroupSubs(st); len(added) > 0 {
			var subjects []string
			for _, g := range added {
				subjects = append(subjects, wire.SubjectCommandsGroup(g))
			}
			// A group joined now may already have a command waiting in EXEC.
			a.replays.replaySubjects(ctx, subjects)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// syncGroupSubs subscribes to the commands of new groups (flushing, so a
// command sent right after the membership change is not missed) and drops
// the subscriptions of groups left. It returns the groups added.
func (a *Agent) syncGroupSubs(st configsync.State) []string {
	a.gsubs.mu.Lock()
	defer a.gsubs.mu.Unlock()
	var added []string
	for _, g := range st.Groups {
		if _, ok := a.gsubs.subs[g]; ok {
			continue
		}
		s, err := a.nc.Subscribe(wire.SubjectCommandsGroup(g), a.onCommand)
		if err != nil {
			a.log.Error("cannot subscribe to a group's commands", "group", g, "err", err)
			continue
		}
		_ = s.SetPendingLimits(-1, -1)
		a.gsubs.subs[g] = s
		added = append(added, g)
	}
	for g, s := range a.gsubs.subs {
		if !slices.Contains(st.Groups, g) {
			_ = s.Unsubscribe()
			delete(a.gsubs.subs, g)
			a.log.Info("left group", "group", g)
		}
	}
	if len(added) > 0 {
		if a.link.Connected() {
			if err := a.nc.FlushTimeout(5 * time.Second); err != nil {
				a.log.Warn("group subscriptions not confirmed by the broker", "err", err)
			}
		}
		a.log.Info("joined groups", "groups", added)
	}
	return added
}

func (a *Agent) unsubscribeGroups() {
	a.gsubs.mu.Lock()
	defer a.gsubs.mu.Unlock()
	for g, s := range a.gsubs.subs {
		_ = s.Unsubscribe()
		delete(a.gsubs.subs, g)
	}
}

// onConfigRequest answers agents.<pc>.config with what the agent believes.
func (a *Agent) onConfigRequest(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	b, err := json.Marshal(a.cfgsync.Report())
	if err != nil {
		return
	}
	_ = m.Respond(b)
}
