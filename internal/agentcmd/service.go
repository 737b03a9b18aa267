package agentcmd

import (
	"io"

	"github.com/kanade-project/kanade/internal/service"
)

// serviceMain runs `kanade-agent service install|uninstall|start|stop|status`
// (args are the words after "service"), dispatched by Main before the
// daemon's flags are parsed. The command line itself is service.Command,
// which its tests drive without the agent.
func serviceMain(args []string, stdout, stderr io.Writer) int {
	return service.Command(args, stdout, stderr)
}
