package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/release/binfmt"
	"github.com/kanade-project/kanade/internal/rollout"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// EnvReleaseKey holds the path of the release private key file used by
// `kanade agent publish` when --release-key is not given. It is a path,
// never the key itself: key material must not sit in the environment.
const EnvReleaseKey = "KANADE_RELEASE_KEY"

// versionProbeTimeout bounds `<binary> --version` during publish.
const versionProbeTimeout = 10 * time.Second

// isTerminal reports whether w is an interactive terminal (the progress
// bar is drawn only there). A variable so tests can pretend.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (a *app) releaseKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release-key",
		Short: "Create the Ed25519 key that signs agent releases",
		Long: `Agents update themselves only to binaries whose release record is signed by a
key they trust. "release-key generate" creates such a key pair:

  DIR/release.key  the private key (mode 0600). It stays with the release
                   manager (or the build system) and signs every
                   "kanade agent publish --release-key DIR/release.key".
  DIR/release.pub  the public key. It goes to every endpoint:
                   [security] release_keys_file in agent.toml, or on Windows
                   the registry value ReleaseKeys under
                   HKLM\SOFTWARE\Kanade\Agent.

A ring file may hold several public-key lines: to rotate keys, add the new
.pub line to the endpoints' ring, publish with the new key, then remove the
old line.`,
	}
	var dir string
	gen := &cobra.Command{
		Use:     "generate --dir DIR",
		Short:   "Write DIR/release.key (private, 0600) and DIR/release.pub (public)",
		Example: "  kanade release-key generate --dir ~/.kanade/keys",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return &exitError{exitUsage, "--dir is required: the directory that receives release.key and release.pub"}
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			keyPath := filepath.Join(abs, signing.PurposeRelease+".key")
			pubPath := filepath.Join(abs, signing.PurposeRelease+".pub")
			// signing.Generate refuses an existing private key but would
			// silently replace a lone public key (a ring copied from an
			// endpoint, say): refuse both.
			for _, p := range []string{keyPath, pubPath} {
				if _, err := os.Lstat(p); err == nil {
					return &exitError{exitFailure, fmt.Sprintf("%s already exists; refusing to overwrite a release key (a lost private key cannot sign again, and endpoints trust the public one). Choose another --dir", p)}
				} else if !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			id, err := signing.Generate(abs, signing.PurposeRelease)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, `generated release key %s
  private key: %s (mode 0600)
      keep it with the release manager; never copy it to endpoints.
      sign releases with: kanade agent publish <binary> --release-key %s
      (or set %s to its path)
  public key:  %s
      install it on every endpoint:
        agent.toml:  [security]
                     release_keys_file = "<path of release.pub on the endpoint>"
        Windows:     or the registry value ReleaseKeys (REG_MULTI_SZ, one key line
                     per string) under HKLM\SOFTWARE\Kanade\Agent
      endpoints that trust a release key refuse unsigned releases and releases
      signed by any other key.
`, id, keyPath, keyPath, EnvReleaseKey, pubPath)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory for release.key and release.pub (created 0700 if missing)")
	cmd.AddCommand(gen)
	cmd.RunE = parentRunE
	return cmd
}

// publishView is the JSON output of `agent publish`.
type publishView struct {
	Object      string    `json:"object"`
	Version     string    `json:"version"`
	OS          string    `json:"os"`
	Arch        string    `json:"arch"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	KeyID       string    `json:"key_id,omitempty"`
	Signed      bool      `json:"signed"`
	PublishedAt time.Time `json:"published_at"`
	Replaced    bool      `json:"replaced,omitempty"`
	RolledOut   bool      `json:"rolled_out"`
}

func (a *app) agentPublishCmd() *cobra.Command {
	var version, keyFile, output string
	var unsigned, force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "publish <binary> [--version v] [--release-key FILE | --unsigned]",
		Short: "Upload an agent binary to agent_releases (does not roll it out)",
		Long: `Upload a kanade-agent binary to the object store agent_releases as
<version>/<os>-<arch>, with a release record (version, platform, size,
sha256) signed by the release key. The platform is read from the binary's
header (ELF, PE or Mach-O), never guessed.

The version: --version, or else — when the binary is built for this machine's
platform — what "<binary> --version" prints. A binary for another platform
cannot be asked, so --version is required for it. The binary must report the
same version once running: after swapping to it, an agent compares its own
version with the target and refuses a label that lies (loop guard).

The key: --release-key FILE, or the file named by ` + EnvReleaseKey + `. --unsigned
publishes without a signature; endpoints that trust any release key refuse
such a release.

An existing release of the same version and platform is never replaced
without --force: the version would no longer name one binary, and agents
already running that version would never take the new bytes.

Publishing changes no configuration. Roll out with
"kanade agent rollout <version> --group canary" (or --global / --pc).`,
		Example: `  kanade agent publish ./kanade-agent --release-key ~/.kanade/keys/release.key
  kanade agent publish ./kanade-agent.exe --version 1.4.0
  KANADE_RELEASE_KEY=~/.kanade/keys/release.key kanade agent publish dist/linux-arm64/kanade-agent -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if err := checkOutput(output); err != nil {
				return err
			}
			keySource := "--release-key"
			if keyFile == "" {
				if env := os.Getenv(EnvReleaseKey); env != "" {
					keyFile, keySource = env, EnvReleaseKey
				}
			}
			switch {
			case unsigned && keyFile != "":
				return &exitError{exitUsage, fmt.Sprintf("--unsigned and a release key (%s %s) exclude each other; nothing published", keySource, keyFile)}
			case !unsigned && keyFile == "":
				return &exitError{exitUsage, fmt.Sprintf("no release key: pass --release-key FILE (or set %s to the key file's path), or --unsigned to publish without a signature (endpoints that trust a release key will refuse it); nothing published", EnvReleaseKey)}
			}
			versionGiven := cmd.Flags().Changed("version")
			if versionGiven {
				if err := checkPublishVersion(version); err != nil {
					return &exitError{exitUsage, "--version: " + err.Error() + "; nothing published"}
				}
			}
			goos, goarch, err := binfmt.Detect(path)
			if err != nil {
				return &exitError{exitFailure, err.Error() + "; nothing published"}
			}
			plat := goos + "/" + goarch
			native := goos == runtime.GOOS && goarch == runtime.GOARCH
			switch {
			case !versionGiven && !native:
				return &exitError{exitUsage, fmt.Sprintf("%s is a %s binary: it cannot run on this %s/%s machine to tell its version, so pass --version (the version it prints with --version); nothing published", path, plat, runtime.GOOS, runtime.GOARCH)}
			case !versionGiven:
				v, err := probeVersion(cmd.Context(), path)
				if err != nil {
					return &exitError{exitFailure, err.Error() + "; pass --version; nothing published"}
				}
				if err := checkPublishVersion(v); err != nil {
					return &exitError{exitFailure, fmt.Sprintf("%s --version printed %q: %v; nothing published", path, v, err)}
				}
				version = v
			case native:
				// Confirm the label: a binary that reports another version
				// would be refused by every agent right after the swap.
				v, err := probeVersion(cmd.Context(), path)
				switch {
				case err != nil:
					fmt.Fprintf(a.errOut, "kanade: warning: could not confirm that the binary reports %s: %v\n", version, err)
				case v != version:
					return &exitError{exitFailure, fmt.Sprintf("%s reports version %q, not %q: agents would swap to it, restart as %q and refuse it (loop guard). Rebuild it with -ldflags \"-X github.com/kanade-project/kanade/internal/buildinfo.Version=%s\", or drop --version; nothing published", path, v, version, v, version)}
				}
			default:
				if output != "json" {
					fmt.Fprintf(a.errOut, "kanade: note: a %s binary cannot run here to confirm that it reports %s; it must, or agents refuse it after the swap (loop guard)\n", plat, version)
				}
			}

			var key ed25519.PrivateKey
			keyID := ""
			if keyFile != "" {
				if key, err = signing.LoadPrivate(keyFile, signing.PurposeRelease); err != nil {
					return &exitError{exitFailure, fmt.Sprintf("release key (%s): %v; nothing published", keySource, err)}
				}
				keyID = signing.KeyID(key.Public().(ed25519.PublicKey))
				if st, err := os.Stat(keyFile); err == nil && runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
					fmt.Fprintf(a.errOut, "kanade: warning: %s is readable by other users (mode %s); chmod 600 it\n", keyFile, st.Mode().Perm())
				}
			}

			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			obs, err := c.JS.ObjectStore(ctx, wire.ObjectAgentReleases)
			if err != nil {
				return fmt.Errorf("object store %s: %w (run `kanade jetstream setup`)", wire.ObjectAgentReleases, err)
			}
			name := release.ObjectName(version, goos, goarch)
			where := wire.ObjectAgentReleases + "/" + name
			replaced := false
			info, err := obs.GetInfo(ctx, name)
			switch {
			case err == nil:
				if !force {
					return &exitError{exitFailure, existingReleaseError(where, info, path, version)}
				}
				replaced = true
			case !errors.Is(err, jetstream.ErrObjectNotFound):
				return fmt.Errorf("reading %s: %w", where, err)
			}

			opts := release.PublishOptions{Path: path, Version: version, OS: goos, Arch: goarch, Key: key}
			var bar *progressbar.ProgressBar
			if output != "json" && isTerminal(a.errOut) {
				opts.Wrap = func(r io.Reader, size int64) io.Reader {
					bar = a.uploadBar(size, "uploading "+where)
					pr := progressbar.NewReader(r, bar)
					return &pr
				}
			}
			rec, err := release.Publish(ctx, c.JS, opts)
			if bar != nil && !bar.IsFinished() {
				_ = bar.Exit() // ends the line (OnCompletion)
			}
			if err != nil {
				return err
			}
			if rec.KeyID != keyID {
				return fmt.Errorf("internal error: published with key id %q, expected %q", rec.KeyID, keyID)
			}
			view := publishView{Object: name, Version: rec.Version, OS: rec.OS, Arch: rec.Arch, Size: rec.Size, SHA256: rec.SHA256,
				KeyID: rec.KeyID, Signed: rec.KeyID != "", PublishedAt: rec.PublishedAt, Replaced: replaced}
			if output == "json" {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(view)
			}
			signed := "key " + rec.KeyID
			if rec.KeyID == "" {
				signed = "UNSIGNED (endpoints that trust a release key will refuse it)"
			}
			verb := "published"
			if replaced {
				verb = "replaced (--force)"
			}
			fmt.Fprintf(a.out, `%s %s
  version:   %s
  platform:  %s/%s
  size:      %d bytes (%s)
  sha256:    %s
  signed:    %s
not rolled out: run kanade agent rollout %s --group <g> (or --global / --pc <pc>)
`, verb, where, rec.Version, rec.OS, rec.Arch, rec.Size, humanBytes(rec.Size), rec.SHA256, signed, rec.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "version label (default: what the binary prints with --version, if it can run here)")
	cmd.Flags().StringVar(&keyFile, "release-key", "", "release private key file (default: $"+EnvReleaseKey+")")
	cmd.Flags().BoolVar(&unsigned, "unsigned", false, "publish without a signature (endpoints that trust a release key refuse it)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing release of the same version and platform")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text | json")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up the upload after this long")
	return cmd
}

// checkPublishVersion is release.CheckVersion, plus "dev": the version of
// a binary built without a version stamp, which no agent can confirm.
func checkPublishVersion(v string) error {
	if err := release.CheckVersion(v); err != nil {
		return err
	}
	if v == "dev" {
		return errors.New(`"dev" is the version of a binary built without a version stamp; build it with -ldflags "-X github.com/kanade-project/kanade/internal/buildinfo.Version=<v>"`)
	}
	return nil
}

func existingReleaseError(where string, info *jetstream.ObjectInfo, path, version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s already exists", where)
	rec, _, _, err := release.FromMetadata(info.Metadata)
	if err == nil {
		signed := "unsigned"
		if rec.KeyID != "" {
			signed = "key " + rec.KeyID
		}
		fmt.Fprintf(&b, " (sha256 %s, %s, published %s)", rec.SHA256, signed, rec.PublishedAt.Format(time.RFC3339))
		if sum, err := fileSHA256(path); err == nil && sum == rec.SHA256 {
			b.WriteString("; it holds these very bytes, nothing to do")
		}
	}
	fmt.Fprintf(&b, ".\nReplacing a published binary under the same version defeats the agents' loop guard (an agent already running %s never takes the new bytes) and the audit trail (the version no longer names one binary): publish it as a new version. --force replaces it anyway; nothing published", version)
	return b.String()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// probeVersion runs `<path> --version` and returns its trimmed stdout.
func probeVersion(ctx context.Context, path string) (string, error) {
	// An absolute path: a bare name must never be looked up in $PATH.
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, versionProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, abs, "--version")
	stdout, stderr := &capped{max: 4096}, &capped{max: 4096}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return "", fmt.Errorf("%s --version did not finish within %s", path, versionProbeTimeout)
	case err != nil:
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			msg = ": " + msg
		}
		return "", fmt.Errorf("%s --version failed (%v)%s", path, err, truncate([]byte(msg)))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (a *app) uploadBar(size int64, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(size,
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWriter(a.errOut),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(65*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.errOut) }),
		progressbar.OptionSetRenderBlankState(true),
	)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// releaseRow is one object of agent_releases as listed (the listing and
// its checks are shared with the HTTP API).
type releaseRow = rollout.Release

func (a *app) agentReleasesCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "releases",
		Short: "List the agent binaries published in agent_releases",
		Long: `List every release in agent_releases, one line per version and platform.
SIGNED is the id of the key that signed it, UNSIGNED, or "invalid record: …"
when agents would refuse the object whatever their keys. Signatures are
verified by the endpoints against their own release keys.`,
		Example: "  kanade agent releases\n  kanade agent releases -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, closeConn, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), kvTimeout)
			defer cancel()
			rows, err := rollout.ListReleases(ctx, c.JS)
			if err != nil {
				return err
			}
			if output == "json" {
				if rows == nil {
					rows = []releaseRow{}
				}
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintf(a.out, "no release published (%s is empty); publish one with kanade agent publish <binary>\n", wire.ObjectAgentReleases)
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tPLATFORM\tSIZE\tSHA256\tSIGNED\tPUBLISHED")
			for _, r := range rows {
				version, plat := r.Version, r.Platform()
				if r.Version == "" {
					version, plat = r.Object, "?"
				}
				sum := r.SHA256
				if len(sum) > 12 {
					sum = sum[:12]
				}
				if sum == "" {
					sum = "-"
				}
				signed := "UNSIGNED"
				switch {
				case r.Problem != "":
					signed = "invalid record: " + r.Problem
				case r.Signed:
					signed = r.KeyID
				}
				published := "-"
				if !r.PublishedAt.IsZero() {
					published = r.PublishedAt.UTC().Format("2006-01-02 15:04:05Z")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", version, plat, humanBytes(int64(r.Size)), sum, signed, published)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text | json")
	return cmd
}
