package service

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/agentconfig"
)

// TestDeployScriptWritesAValidConfig: the agent.toml template in
// deploy/deploy-agent.ps1, with its PowerShell expressions replaced by the
// values the script would put there, is accepted by the agent's strict
// config parser with those values; the script drives the service under the
// name the code uses, through `service install --config` and
// `service start`.
func TestDeployScriptWritesAValidConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "deploy-agent.ps1"))
	if err != nil {
		t.Fatal(err)
	}
	script := strings.ReplaceAll(string(b), "\r\n", "\n") // a CRLF checkout
	_, rest, ok := strings.Cut(script, "$text = @\"\n")
	if !ok {
		t.Fatal(`no "$text = @"" here-string in the script`)
	}
	tmpl, _, ok := strings.Cut(rest, "\n\"@")
	if !ok {
		t.Fatal("unterminated here-string")
	}
	toml := strings.NewReplacer(
		"$(ConvertTo-TomlString $AgentId)", `'PC-01'`,
		"[$urlList]", `['nats://n1:4222', 'nats://n2:4222']`,
		"$(ConvertTo-TomlString $dataDir)", `'C:\ProgramData\Kanade\data'`,
		"$(ConvertTo-TomlString $LogLevel)", `'warn'`,
		"$(ConvertTo-TomlString (Join-Path $logDir 'agent.log'))", `'C:\ProgramData\Kanade\logs\agent.log'`,
		"$RegistryPath", `SOFTWARE\Kanade\Agent`,
	).Replace(tmpl)
	if strings.Contains(toml, "$") {
		t.Fatalf("template has an expression this test does not know:\n%s", toml)
	}
	cfg, err := agentconfig.Parse([]byte(toml))
	if err != nil {
		t.Fatalf("the agent rejects the config the script writes: %v\n%s", err, toml)
	}
	if cfg.Agent.ID != "PC-01" || !reflect.DeepEqual(cfg.Agent.NATSURLs, []string{"nats://n1:4222", "nats://n2:4222"}) ||
		cfg.Agent.DataDir != `C:\ProgramData\Kanade\data` || cfg.Log.Level != "warn" || cfg.Log.Path != `C:\ProgramData\Kanade\logs\agent.log` {
		t.Errorf("parsed config = %+v", cfg)
	}
	if strings.Contains(strings.ToLower(toml), "token =") {
		t.Error("the config template holds a token")
	}
	for _, want := range []string{
		"$ServiceName = '" + Name + "'",
		"@('service', 'install', '--config', $configPath",
		"@('service', 'start')",
		"'NatsToken'",
		// The registry values the agent reads (agentconfig's
		// *_windows.go): a typo here would install keys the agent
		// never sees.
		"SetValue('NatsNkeySeed'",
		"SetValue('ReleaseKeys'",
		"SetValue('CommandKeys', [string[]]$commandKeys, [Microsoft.Win32.RegistryValueKind]::MultiString)",
		"SetValue('RequireSignedCommands', $requireSigned, [Microsoft.Win32.RegistryValueKind]::DWord)",
		"'^kanade-command-key ed25519 [A-Za-z0-9+/]+=*$'",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %s", want)
		}
	}
}
