package service

import (
	"reflect"
	"testing"
	"time"
)

// TestWindowsServiceSpec asserts every setting install applies on Windows,
// on any platform: service KanadeAgent, display name and description, own
// process, automatic start without delay, LocalSystem, the quoted binary
// with --config FILE as its arguments, restart after 5 s, 15 s and 60 s,
// failure count reset after a day, and the failure-actions flag that makes
// exit 64 restart the agent.
func TestWindowsServiceSpec(t *testing.T) {
	const bin = `C:\Program Files\Kanade\kanade-agent.exe`
	const cfg = `C:\ProgramData\Kanade\config\agent.toml`
	got := windowsServiceSpec(bin, cfg)
	want := ServiceSpec{
		Name:   "KanadeAgent",
		Binary: bin,
		Args:   []string{"--config", cfg},
		Config: WindowsConfig{
			ServiceType:      0x10, // SERVICE_WIN32_OWN_PROCESS
			StartType:        2,    // SERVICE_AUTO_START
			ErrorControl:     1,    // SERVICE_ERROR_NORMAL
			BinaryPathName:   `"C:\Program Files\Kanade\kanade-agent.exe" --config C:\ProgramData\Kanade\config\agent.toml`,
			ServiceStartName: "LocalSystem",
			DisplayName:      "Kanade Agent",
			Description:      Description,
			DelayedAutoStart: false,
		},
		RecoveryActions: []RecoveryAction{
			{Type: 1, Delay: 5 * time.Second}, // SC_ACTION_RESTART
			{Type: 1, Delay: 15 * time.Second},
			{Type: 1, Delay: 60 * time.Second},
		},
		ResetPeriod:                86400,
		RecoveryOnNonCrashFailures: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("windowsServiceSpec:\n got %+v\nwant %+v", got, want)
	}
	if got.Name != Name {
		t.Errorf("spec name %q differs from the name Run registers, %q", got.Name, Name)
	}
}

// Without --config the service gets no arguments: the agent then finds
// its config by KANADE_AGENT_CONFIG or the default path.
func TestWindowsServiceSpecWithoutConfig(t *testing.T) {
	got := windowsServiceSpec(`C:\Program Files\Kanade\kanade-agent.exe`, "")
	if got.Args != nil {
		t.Errorf("args = %q, want none", got.Args)
	}
	if want := `"C:\Program Files\Kanade\kanade-agent.exe"`; got.Config.BinaryPathName != want {
		t.Errorf("command line = %s, want %s", got.Config.BinaryPathName, want)
	}
}

// The command line of an update is built without syscall (it only exists
// on Windows); these are syscall.EscapeArg's answers, which the Windows
// test TestWindowsEscapeArgMatchesSyscall compares directly.
func TestWindowsCommandLineQuoting(t *testing.T) {
	for _, tc := range []struct {
		exe  string
		args []string
		want string
	}{
		{`C:\Kanade\kanade-agent.exe`, nil, `C:\Kanade\kanade-agent.exe`},
		{`C:\Program Files\Kanade\kanade-agent.exe`, []string{"--config", `D:\conf dir\agent.toml`},
			`"C:\Program Files\Kanade\kanade-agent.exe" --config "D:\conf dir\agent.toml"`},
		{`C:\a.exe`, []string{""}, `C:\a.exe ""`},
		{`C:\a.exe`, []string{`dir with space\`}, `C:\a.exe "dir with space\\"`},
		{`C:\a.exe`, []string{`say "hi"`}, `C:\a.exe "say \"hi\""`},
		{`C:\a.exe`, []string{`x\"y`}, `C:\a.exe x\\\"y`},
	} {
		if got := windowsCommandLine(tc.exe, tc.args); got != tc.want {
			t.Errorf("windowsCommandLine(%q, %q) = %s, want %s", tc.exe, tc.args, got, tc.want)
		}
	}
}
