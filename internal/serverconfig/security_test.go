package serverconfig

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/signing"
)

func TestCommandSigner(t *testing.T) {
	dir := t.TempDir()
	id, err := signing.Generate(dir, signing.PurposeCommand)
	if err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(t.TempDir(), "loose.key")
	b, _ := os.ReadFile(filepath.Join(dir, "command.key"))
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, wantID, wantErr string
	}{
		{name: "unset signs nothing"},
		{name: "a command key", file: filepath.Join(dir, "command.key"), wantID: id},
		{name: "missing", file: filepath.Join(dir, "none.key"), wantErr: "does not exist"},
		{name: "the public key", file: filepath.Join(dir, "command.pub"), wantErr: "not a command private key"},
		{name: "readable by others", file: loose, wantErr: "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.wantErr, "chmod") && runtime.GOOS == "windows" {
				t.Skip("no mode bits on Windows")
			}
			toml := ""
			if tc.file != "" {
				toml = "[security]\ncommand_key_file = '" + tc.file + "'\n"
			}
			c, err := Parse([]byte(toml))
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.CommandSigner()
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "[security] command_key_file") {
					t.Fatalf("CommandSigner = %v, want an error with %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case tc.wantID == "" && s != nil, tc.wantID != "" && (s == nil || s.KeyID() != tc.wantID):
				t.Fatalf("signer %v, want key %q", s, tc.wantID)
			}
		})
	}
	if _, err := Parse([]byte("[security]\ncommand_keys_file = 'x'\n")); err == nil {
		t.Error("the agent's key name was accepted in server.toml")
	}
}
