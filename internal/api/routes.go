package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/kvcas"
	"github.com/kanade-project/kanade/internal/wire"
)

const (
	viewer   = apiauth.RoleViewer
	operator = apiauth.RoleOperator
	admin    = apiauth.RoleAdmin
)

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /metrics", s.serveMetrics)

	s.handle("POST /api/run", operator, s.run)
	s.handle("POST /api/executions/{exec_id}/kill", operator, s.kill)
	s.handle("POST /api/jobs/{job}/revoke", operator, s.setScriptStatus(wire.ScriptRevoked))
	s.handle("POST /api/jobs/{job}/unrevoke", operator, s.setScriptStatus(wire.ScriptActive))
	s.handle("POST /api/agents/{pc}/ping", viewer, s.ping)
	s.handle("GET /api/agents/{pc}/config", viewer, s.agentConfig)
	s.handle("GET /api/agents/{pc}/groups", viewer, s.getGroups)
	s.handle("PUT /api/agents/{pc}/groups", operator, s.putGroups)
	s.storeRoutes()
	s.jobRoutes()
	s.scheduleRoutes()
	s.configRoutes()
	s.sessionRoutes()
	s.executionRoutes()
	s.credentialRoutes()
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	status := http.StatusOK
	body := map[string]any{"ok": true, "nats": s.d.NC.Status().String()}
	if !s.d.NC.IsConnected() {
		status = http.StatusServiceUnavailable
		body["ok"] = false
	}
	writeJSON(w, status, body)
}

// runRequest is an ad-hoc run.
type runRequest struct {
	Target  targetJSON `json:"target"`
	Shell   string     `json:"shell,omitempty"`
	Script  string     `json:"script"`
	Timeout string     `json:"timeout,omitempty"`
	Jitter  string     `json:"jitter,omitempty"`
}

type targetJSON struct {
	All   bool   `json:"all,omitempty"`
	Group string `json:"group,omitempty"`
	PC    string `json:"pc,omitempty"`
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	var req runRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	t := fleetclient.Target{All: req.Target.All, Group: req.Target.Group, PC: req.Target.PC}
	if _, err := t.Subject(); err != nil {
		return errf(http.StatusBadRequest, "bad_target", "%v", err)
	}
	if req.Script == "" {
		return errf(http.StatusBadRequest, "bad_request", "script is empty")
	}
	switch req.Shell {
	case "", wire.ShellPowerShell, wire.ShellPwsh, wire.ShellCmd, wire.ShellSh, wire.ShellBash:
	default:
		return errf(http.StatusBadRequest, "bad_shell", "shell %q: expected powershell, pwsh, cmd, sh, bash or empty", req.Shell)
	}
	cmd := wire.Command{ID: wire.AdhocJobID, Shell: req.Shell, Script: req.Script}
	for _, d := range []struct {
		name string
		in   string
		out  *int
	}{{"timeout", req.Timeout, &cmd.TimeoutSecs}, {"jitter", req.Jitter, &cmd.JitterSecs}} {
		if d.in == "" {
			continue
		}
		v, err := wire.ParseDuration(d.in)
		if err != nil {
			return errf(http.StatusBadRequest, "bad_duration", "%s: %v", d.name, err)
		}
		*d.out = int((v + time.Second - 1) / time.Second)
	}
	cmd = fleetclient.Prepare(cmd)
	if err := s.audit(r.Context(), id, "run", cmd.ExecID, map[string]any{"target": req.Target, "shell": req.Shell, "script": req.Script, "request_id": cmd.RequestID}); err != nil {
		return err
	}
	if err := s.fleet.Publish(r.Context(), t, cmd); err != nil {
		return errf(http.StatusServiceUnavailable, "publish_failed", "%v", err)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"request_id": cmd.RequestID, "exec_id": cmd.ExecID})
	return nil
}

func (s *Server) kill(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	execID, err := pathToken(r, "exec_id")
	if err != nil {
		return err
	}
	if err := s.audit(r.Context(), id, "kill", execID, nil); err != nil {
		return err
	}
	if err := s.d.NC.Publish(wire.SubjectKill(execID), nil); err != nil {
		return errf(http.StatusServiceUnavailable, "publish_failed", "%v", err)
	}
	if err := s.d.NC.FlushTimeout(5 * time.Second); err != nil {
		return errf(http.StatusServiceUnavailable, "publish_failed", "%v", err)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"exec_id": execID, "kill": "sent"})
	return nil
}

func (s *Server) setScriptStatus(value string) handler {
	return func(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
		job, err := pathToken(r, "job")
		if err != nil {
			return err
		}
		kv, err := s.d.JS.KeyValue(r.Context(), wire.BucketScriptStatus)
		if err != nil {
			return errf(http.StatusServiceUnavailable, "kv_unavailable", "%v", err)
		}
		action := "revoke"
		if value == wire.ScriptActive {
			action = "unrevoke"
		}
		if err := s.audit(r.Context(), id, action, job, nil); err != nil {
			return err
		}
		if _, err := kv.Put(r.Context(), job, []byte(value)); err != nil {
			return errf(http.StatusServiceUnavailable, "kv_write_failed", "%v", err)
		}
		writeJSON(w, http.StatusOK, map[string]string{"job": job, "status": value})
		return nil
	}
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	hb, err := s.fleet.Ping(ctx, pc)
	if err != nil {
		return errf(http.StatusGatewayTimeout, "agent_unreachable", "%v", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"heartbeat": hb, "rtt_ms": float64(time.Since(start).Microseconds()) / 1000})
	return nil
}

func (s *Server) agentConfig(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	m, err := s.d.NC.RequestWithContext(ctx, wire.SubjectAgentConfig(pc), nil)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return errf(http.StatusNotFound, "agent_not_connected", "agent %q is not connected", pc)
		}
		return errf(http.StatusGatewayTimeout, "agent_unreachable", "%v", err)
	}
	var rep wire.ConfigReport
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return errf(http.StatusBadGateway, "bad_agent_answer", "%v", err)
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) getGroups(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	kv, err := s.d.JS.KeyValue(r.Context(), wire.BucketAgentGroups)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "kv_unavailable", "%v", err)
	}
	v, err := kvcas.Read(r.Context(), kv, pc)
	if err != nil {
		return err
	}
	groups := []string{}
	if v.Revision > 0 {
		if gs, _, err := fleetconfig.ParseGroups(v.Value); err == nil {
			groups = append(groups, gs...)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"pc_id": pc, "groups": groups, "revision": v.Revision})
	return nil
}

// putGroups replaces a PC's groups; the body names the revision it read.
func (s *Server) putGroups(w http.ResponseWriter, r *http.Request, id apiauth.Identity) error {
	pc, err := pathToken(r, "pc")
	if err != nil {
		return err
	}
	var req struct {
		Groups   []string `json:"groups"`
		Revision uint64   `json:"revision"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	groups, bad, _ := fleetconfig.NormalizeGroups(req.Groups)
	if len(bad) > 0 {
		return errf(http.StatusBadRequest, "bad_group", "%s", bad[0])
	}
	kv, err := s.d.JS.KeyValue(r.Context(), wire.BucketAgentGroups)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "kv_unavailable", "%v", err)
	}
	b, _ := json.Marshal(wire.AgentGroups{Groups: append([]string{}, groups...)})
	if err := s.audit(r.Context(), id, "set_groups", pc, map[string]any{"groups": groups}); err != nil {
		return err
	}
	rev, err := kvcas.Put(r.Context(), kv, pc, b, req.Revision)
	var ce *kvcas.ConflictError
	if errors.As(err, &ce) {
		return errf(http.StatusConflict, "conflict", "%v", ce)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"pc_id": pc, "groups": groups, "revision": rev})
	return nil
}
