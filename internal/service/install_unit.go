package service

// The systemd unit as a pure function, in a file every platform compiles:
// deploy/kanade-agent.service is this text for the default paths, and a
// test keeps the two identical.

import (
	"fmt"
	"strings"
)

// unitTemplate is the unit; %s are the quoted ExecStart words.
const unitTemplate = `# kanade-agent: the kanade endpoint daemon.
#
# Written by "kanade-agent service install", which rewrites it on every
# run: change the install options rather than this file, or use a drop-in
# (systemctl edit kanade-agent).
#
# The NATS token never goes in agent.toml or on the command line: put
#   KANADE_NATS_TOKEN=...
# in /etc/kanade/agent.env, owned by root and readable by root only
# (chown root:root /etc/kanade/agent.env; chmod 600 /etc/kanade/agent.env).
# The "-" lets the agent start without that file when the broker needs no
# token.

[Unit]
Description=Kanade Agent (kanade endpoint daemon)
Documentation=https://github.com/kanade-project/kanade
Wants=network-online.target
After=network-online.target
# Never give up restarting: the agent is how this machine is managed.
StartLimitIntervalSec=0

[Service]
Type=simple
User=root
ExecStart=%s
EnvironmentFile=-/etc/kanade/agent.env
# Any non-zero exit restarts the agent, 5 s later. That includes exit 64,
# with which the agent asks for a restart after swapping in a
# self-update, so RestartPreventExitStatus= must stay unset.
Restart=on-failure
RestartSec=5
# A stop sends SIGTERM to the agent alone: it ends the process trees of
# the scripts it runs itself and records their results before it exits.
# Whatever is left in the unit once the agent has exited, or when
# TimeoutStopSec runs out, gets SIGKILL.
KillMode=mixed
TimeoutStopSec=30
# Light hardening only. The agent exists to run administrators' scripts as
# root: they install packages, edit /etc, manage services and users and
# call setuid helpers. So no NoNewPrivileges= (it would also apply to every
# script and break sudo, su and other setuid/file-capability tools), no
# ProtectSystem=strict or ProtectHome= (read-only /usr, /etc or /home),
# no PrivateTmp= (scripts hand files to other programs through /tmp), no
# RestrictSUIDSGID= or SystemCallFilter=. What remains costs scripts
# nothing in practice:
LockPersonality=yes
RestrictRealtime=yes

[Install]
WantedBy=multi-user.target
`

// unitFile returns the systemd unit that runs the agent at binary with the
// config file configPath. Both must be absolute paths without control
// characters.
func unitFile(binary, configPath string) (string, error) {
	for _, p := range []struct{ what, path string }{{"agent binary", binary}, {"config file", configPath}} {
		if !strings.HasPrefix(p.path, "/") {
			return "", fmt.Errorf("%s %q: the systemd unit needs an absolute path", p.what, p.path)
		}
		if strings.ContainsFunc(p.path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "", fmt.Errorf("%s %q: a path with control characters cannot go in a systemd unit", p.what, p.path)
		}
	}
	exec := strings.Join([]string{systemdQuote(binary), "--config", systemdQuote(configPath)}, " ")
	return fmt.Sprintf(unitTemplate, exec), nil
}

// systemdQuote writes one ExecStart word: specifiers (%) and variable
// expansion ($) are escaped, and a word with spaces, quotes or backslashes
// is double-quoted with C-style escapes.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
