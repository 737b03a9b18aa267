package service

import (
	"bytes"
	"strings"
	"testing"
)

func runCommand(m *Manager, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	if m == nil {
		code = Command(args, &o, &e)
	} else {
		m.Out = &o
		code = command(m, args, &o, &e)
	}
	return code, o.String(), e.String()
}

// TestServiceHelpTeachesSubcommands: `kanade-agent service --help` exits 0
// and explains every subcommand, the install flags and the exit codes.
func TestServiceHelpTeachesSubcommands(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		code, out, _ := runCommand(nil, arg)
		if code != 0 {
			t.Errorf("service %s: exit %d, want 0", arg, code)
		}
		for _, want := range []string{
			"service install", "service uninstall", "service start", "service stop", "service status",
			"--config FILE", "--binary PATH", "--copy", "KanadeAgent", "kanade-agent.service",
			"Exit codes", "not installed", "NatsToken", "agent.env",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("service %s: help lacks %q", arg, want)
			}
		}
	}
}

// TestServiceUsageErrors: a missing or unknown subcommand, an unknown flag
// or a stray argument is a usage error (exit 2) that points to the help,
// and nothing is run.
func TestServiceUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "kanade-agent service install"},
		{[]string{"restart"}, `unknown command "restart"`},
		{[]string{"install", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"start", "--config", "x.toml"}, "flag provided but not defined: -config"},
		{[]string{"status", "now"}, `unexpected argument "now"`},
	} {
		code, out, errOut := runCommand(nil, tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2, no output, stderr mentioning %q", tc.args, code, out, errOut, tc.want)
		}
	}
}
