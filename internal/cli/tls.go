package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/tlsconf"
)

// Environment variables naming the CA bundles the CLI trusts.
const (
	EnvNATSCA = "KANADE_NATS_CA"
	EnvAPICA  = "KANADE_API_CA"
)

// addTLSFlags adds --nats-ca to the root command.
func (a *app) addTLSFlags(root *cobra.Command) {
	root.PersistentFlags().StringVar(&a.natsCA, "nats-ca", os.Getenv(EnvNATSCA),
		"PEM file of the CA that signed the broker's certificate (env "+EnvNATSCA+"); set: TLS is required and only this CA is trusted")
}

// withNATSCA adds TLS to the broker connection options when --nats-ca is
// set.
func (a *app) withNATSCA(opts []nats.Option) ([]nats.Option, error) {
	if a.natsCA == "" {
		return opts, nil
	}
	cfg, err := tlsconf.Client(tlsconf.ClientOptions{CAFile: a.natsCA})
	if err != nil {
		return nil, &exitError{exitUsage, "--nats-ca: " + err.Error()}
	}
	return append(opts, nats.Secure(cfg)), nil
}

// withCA makes c trust --api-ca (only) when it is set.
func (o *apiOpts) withCA(c *apiClient) (*apiClient, error) {
	if o.ca == "" {
		return c, nil
	}
	if !strings.HasPrefix(c.base, "https://") {
		return nil, &exitError{exitUsage, fmt.Sprintf("--api-ca is set but the API URL %s is not https://: the CA would verify nothing", c.base)}
	}
	cfg, err := tlsconf.Client(tlsconf.ClientOptions{CAFile: o.ca})
	if err != nil {
		return nil, &exitError{exitUsage, "--api-ca: " + err.Error()}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	c.hc.Transport = tr
	return c, nil
}

// tlsHint says what to do about a TLS failure reaching what ("the broker",
// "the API"), or "" when err is not one.
func tlsHint(err error, what, flag, env string) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return fmt.Sprintf("%s's certificate is not signed by a CA this command trusts: pass %s FILE (the CA certificate, PEM) or set %s", what, flag, env)
	case errors.As(err, &host):
		return fmt.Sprintf("%s's certificate does not name the host in the URL: use a host name it lists (%s)", what, host.Certificate.DNSNames)
	case errors.As(err, &invalid):
		return fmt.Sprintf("%s's certificate is not valid now (expired, not yet valid, or not for servers): renew it, or check this machine's clock", what)
	case errors.As(err, &verify):
		return fmt.Sprintf("%s's certificate did not verify: check %s / %s", what, flag, env)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Sprintf("%s is set, so TLS is required, but %s does not offer TLS", flag, what)
	}
	return ""
}

func (a *app) tlsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Development certificates and public key pins for TLS",
		Long: `TLS protects the broker connections (agents, CLI, server) and the HTTP API.
In production, use certificates from your own CA and name them in
server.toml ([nats] and [http] tls_cert_file / tls_key_file); agents trust
the CA with [agent] nats_ca_file in agent.toml, and may pin the server's key
with nats_pin_sha256.

"tls dev" makes a throwaway CA and a server certificate for this machine, to
try all of it locally; "tls pin" prints the pins of certificates.`,
	}
	cmd.AddCommand(a.tlsDevCmd(), a.tlsPinCmd())
	cmd.RunE = parentRunE
	return cmd
}

func (a *app) tlsDevCmd() *cobra.Command {
	var dir string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "dev --dir DIR [--host NAME ...]",
		Short: "Make a development CA and a server certificate for this machine",
		Long: `Write a new development CA and a server certificate signed by it:

  DIR/ca.pem       the CA certificate: what agents and the CLI trust
  DIR/ca.key       the CA's private key (mode 0600); it stays in DIR
  DIR/server.pem   the server certificate, for the broker and the API
  DIR/server.key   its private key (mode 0600)

Keys are ECDSA P-256. The server certificate is valid for localhost,
127.0.0.1, ::1, this machine's host name and every --host, for two years;
the CA may sign for those hosts only (X.509 name constraints), so a copy of
its key cannot impersonate anything else to machines that trust ca.pem.
Existing files are never overwritten. Keys are never printed.

For a production fleet use your own CA. "kanade server --dev --tls" does all
of this by itself under its data dir.`,
		Example: `  kanade tls dev --dir ~/.kanade/tls
  kanade tls dev --dir ./tls --host kanade.lab.internal --host 192.0.2.10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return &exitError{exitUsage, "--dir is required: the directory that receives ca.pem, ca.key, server.pem and server.key"}
			}
			for _, h := range hosts {
				if err := devca.CheckHost(h); err != nil {
					return &exitError{exitUsage, "--host: " + err.Error()}
				}
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			names := devca.DefaultHosts(hosts...)
			p, err := devca.Generate(abs, names)
			if err != nil {
				return &exitError{exitFailure, err.Error()}
			}
			// The examples dial the last DNS name: an extra --host, else
			// this machine's name, else localhost.
			host := "localhost"
			for _, n := range names {
				if net.ParseIP(n) == nil {
					host = n
				}
			}
			fmt.Fprintf(a.out, `generated a development CA and a server certificate in %s
  CA certificate: %s   give it to agents and the CLI
  CA key:         %s   (mode 0600) keep it here; never copy it
  server:         %s and %s (mode 0600)
                  valid for %s until %s

server.toml:
  [nats]
  tls_cert_file = '%[4]s'
  tls_key_file = '%[5]s'
  ca_file = '%[2]s'
  [http]
  tls_cert_file = '%[4]s'
  tls_key_file = '%[5]s'

agent.toml:
  [agent]
  nats_urls = ["tls://%[8]s:4222"]
  nats_ca_file = '%[2]s'

CLI:
  kanade --server tls://%[8]s:4222 --nats-ca '%[2]s' ping <pc>
  kanade --api https://%[8]s:8080 --api-ca '%[2]s' job list
  (or set %[9]s and %[10]s to %[2]s)
`, p.Dir, p.CA, p.CAKey, p.Cert, p.Key, strings.Join(names, ", "), time.Now().Add(devca.ServerValidity).Format(time.DateOnly), host, EnvNATSCA, EnvAPICA)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the CA and the certificate (created 0700 if missing)")
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "another DNS name or IP address the server certificate is valid for (repeatable)")
	return cmd
}

func (a *app) tlsPinCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pin CERT.pem ...",
		Short: "Print the public key pin of each certificate in PEM files",
		Long: `Print, for each certificate in the files, its public key pin: the SHA-256 of
its SubjectPublicKeyInfo in hex, one per line, followed by the certificate's
subject and end date. The first certificate of a server's chain file is the
server's own.

Put the server's pin in agent.toml to accept only that key (after the usual
CA verification):

  [agent]
  nats_ca_file = '/etc/kanade/broker-ca.pem'
  nats_pin_sha256 = ["<pin>"]

A pin names a key, not a certificate: renewing the certificate with the
same key keeps it. Before the server changes keys, add the new key's pin
next to the old one on every agent.`,
		Example: "  kanade tls pin /etc/kanade/tls/server.pem",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			for _, f := range files {
				certs, err := tlsconf.LoadCertificates(f)
				if err != nil {
					return &exitError{exitFailure, err.Error()}
				}
				for _, c := range certs {
					fmt.Fprintf(a.out, "%s  %s (until %s)\n", tlsconf.Pin(c), c.Subject.String(), c.NotAfter.Format(time.DateOnly))
				}
			}
			return nil
		},
	}
}
