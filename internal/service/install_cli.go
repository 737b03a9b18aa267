package service

// The command line of `kanade-agent service …`. It lives here, not in
// agentcmd, so that it and its tests need nothing of the agent itself.

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit codes of `kanade-agent service …`, the same as the agent's for the
// first three. status also uses 3 and 4, as LSB init scripts and
// `systemctl status` do, so monitoring scripts can test them.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
	// ExitStatusNotRunning: installed, not running (stopped, starting,
	// stopping).
	ExitStatusNotRunning = 3
	// ExitStatusNotInstalled: the service does not exist.
	ExitStatusNotInstalled = 4
)

func serviceUsage(w io.Writer) {
	fmt.Fprintf(w, `kanade-agent service — install and control the agent's service

Usage:
  kanade-agent service install [--config FILE] [--binary PATH] [--copy]
  kanade-agent service uninstall
  kanade-agent service start
  kanade-agent service stop
  kanade-agent service status

Commands:
  install     register the agent with the service manager; re-running it
              updates the registration (idempotent).
              Windows: the service %[1]s ("%[2]s"), automatic
              start, LocalSystem, restarted by the SCM 5 s, 15 s and 60 s
              after a failure or a non-zero exit (exit 64 after a
              self-update); install does not start it: run "service start".
              Linux: writes %[3]s
              (Restart=on-failure), then runs systemctl daemon-reload and
              systemctl enable --now (which starts it).
  uninstall   stop the service (waiting up to 30 s) and remove it; the
              binary, config, data and logs stay. Not installed is not an
              error.
  start       start the service and wait until it runs
  stop        stop the service and wait until it has stopped
  status      print running, stopped, starting, stopping or not installed
              (no administrator needed)

install flags:
  --config FILE   agent.toml for the service. Windows: passed as
                  "--config FILE" when given (otherwise the agent uses
                  %%ProgramData%%\Kanade\config\agent.toml). Linux:
                  default /etc/kanade/agent.toml.
  --binary PATH   the agent executable the service runs (default: this
                  executable)
  --copy          copy the binary to the standard place first and register
                  the copy: %%ProgramFiles%%\Kanade\kanade-agent.exe on
                  Windows, %[4]s on Linux

Exit codes: 0 done (status: running), 1 failed (for example not run as
administrator/root, or the service is not installed for start/stop),
2 usage error; status also exits 3 when the service is installed but not
running and 4 when it is not installed.

The NATS token never goes in agent.toml or on the command line: on Windows
store it in the registry value HKLM\SOFTWARE\Kanade\Agent\NatsToken
(deploy/deploy-agent.ps1 does, with an ACL for SYSTEM and Administrators);
on Linux put KANADE_NATS_TOKEN=... in /etc/kanade/agent.env (chmod 600),
which the unit reads.
`, Name, DisplayName, DefaultUnitPath, DefaultLinuxBinary)
}

// Command runs `kanade-agent service …`; args are the words after
// "service". It returns the process exit code.
func Command(args []string, stdout, stderr io.Writer) int {
	return command(&Manager{Out: stdout}, args, stdout, stderr)
}

// command is Command with the Manager given, so tests can point it at a
// temporary unit path or service name.
func command(m *Manager, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		serviceUsage(stderr)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		serviceUsage(stdout)
		return ExitOK
	case "install", "uninstall", "start", "stop", "status":
	default:
		fmt.Fprintf(stderr, "kanade-agent service: unknown command %q\n\n", cmd)
		serviceUsage(stderr)
		return ExitUsage
	}
	fs := flag.NewFlagSet("kanade-agent service "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { serviceUsage(stderr) }
	var opts InstallOptions
	if cmd == "install" {
		fs.StringVar(&opts.ConfigPath, "config", "", "agent.toml for the service")
		fs.StringVar(&opts.Binary, "binary", "", "the agent executable the service runs (default: this executable)")
		fs.BoolVar(&opts.Copy, "copy", false, "copy the binary to the standard install location first")
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kanade-agent service %s: unexpected argument %q (see kanade-agent service --help)\n", cmd, fs.Arg(0))
		return ExitUsage
	}
	var err error
	switch cmd {
	case "install":
		err = m.Install(opts)
	case "uninstall":
		err = m.Uninstall()
	case "start":
		err = m.Start()
	case "stop":
		err = m.Stop()
	case "status":
		var st Status
		if st, err = m.Status(); err == nil {
			fmt.Fprintln(stdout, st)
			switch st.State {
			case Running:
				return ExitOK
			case NotInstalled:
				return ExitStatusNotInstalled
			default:
				return ExitStatusNotRunning
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kanade-agent service %s: %v\n", cmd, err)
		return ExitError
	}
	return ExitOK
}
