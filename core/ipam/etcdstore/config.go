package etcdstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// Defaults of Config.
const (
	DefaultPrefix         = "/spiderpool/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 2 * time.Second
	// maxSecretFile bounds what is read from PasswordFile and the TLS files:
	// a FIFO or a huge file must not hang or bloat the agent.
	maxSecretFile = 64 << 10
)

// Config is the `etcd { }` block of the agent's configuration.
type Config struct {
	// Endpoints are the client URLs of the etcd members
	// (http://host:2379 or https://host:2379). Required.
	Endpoints []string
	// Prefix starts every key the store writes, so that several users can
	// share one etcd; it always ends with "/". Default DefaultPrefix.
	Prefix string
	// DialTimeout bounds the first connection to a member. Default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds every call of the store (Get, List, Commit, a
	// lease grant). Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// TLS, when CAFile is set, verifies the members' certificates against
	// that CA; CertFile and KeyFile (both or neither) are the client's
	// certificate for etcd's --client-cert-auth.
	TLS TLSConfig
	// Username and PasswordFile turn on etcd's authentication: the password
	// is the first line of the file, which must not be readable by group
	// or others.
	Username     string
	PasswordFile string
}

// TLSConfig are the files of the `tls { }` block.
type TLSConfig struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// withDefaults returns c with the defaults filled in, or an error naming
// the first field that is wrong.
func (c Config) withDefaults() (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, errors.New("etcd.endpoints: at least one endpoint is required (for example http://127.0.0.1:2379)")
	}
	eps := make([]string, 0, len(c.Endpoints))
	for i, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			return c, fmt.Errorf("etcd.endpoints[%d]: %q is not a client URL of the form http(s)://host:port", i, ep)
		}
		if u.Port() == "" {
			return c, fmt.Errorf("etcd.endpoints[%d]: %q has no port (etcd listens on 2379 by default)", i, ep)
		}
		if u.Scheme == "https" && c.TLS.CAFile == "" {
			// The system roots would work, but an operator running a
			// private etcd almost always meant to name its CA.
			return c, fmt.Errorf("etcd.endpoints[%d]: %q is https but etcd.tls.ca_file is not set", i, ep)
		}
		if u.Scheme == "http" && c.TLS.CAFile != "" {
			return c, fmt.Errorf("etcd.endpoints[%d]: %q is plain http but etcd.tls is set: use https://", i, ep)
		}
		eps = append(eps, u.Scheme+"://"+u.Host)
	}
	c.Endpoints = eps
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	for _, r := range c.Prefix {
		if r < 0x21 || r == 0x7f {
			return c, fmt.Errorf("etcd.prefix: %q contains a space or a control character", c.Prefix)
		}
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.DialTimeout < 0 {
		return c, fmt.Errorf("etcd.dial_timeout: %v is negative", c.DialTimeout)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RequestTimeout < 0 {
		return c, fmt.Errorf("etcd.request_timeout: %v is negative", c.RequestTimeout)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return c, errors.New("etcd.tls: cert_file and key_file go together: set both or neither")
	}
	if c.TLS.CertFile != "" && c.TLS.CAFile == "" {
		return c, errors.New("etcd.tls.ca_file: required when cert_file is set")
	}
	if (c.Username == "") != (c.PasswordFile == "") {
		return c, errors.New("etcd.username and etcd.password_file go together: set both or neither")
	}
	return c, nil
}

// tlsConfig loads the TLS files; nil when TLS is off.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS.CAFile == "" {
		return nil, nil
	}
	ca, err := readBounded(c.TLS.CAFile, false)
	if err != nil {
		return nil, fmt.Errorf("etcd.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("etcd.tls.ca_file: %s holds no PEM certificate", c.TLS.CAFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c.TLS.CertFile != "" {
		certPEM, err := readBounded(c.TLS.CertFile, false)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls.cert_file: %w", err)
		}
		keyPEM, err := readBounded(c.TLS.KeyFile, true)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls.key_file: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls: cert_file %s and key_file %s: %w", c.TLS.CertFile, c.TLS.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// password reads the first line of PasswordFile.
func (c Config) password() (string, error) {
	if c.PasswordFile == "" {
		return "", nil
	}
	b, err := readBounded(c.PasswordFile, true)
	if err != nil {
		return "", fmt.Errorf("etcd.password_file: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("etcd.password_file: %s: the first line is empty", c.PasswordFile)
	}
	return pw, nil
}

// readBounded reads a regular file of at most maxSecretFile bytes. A
// secret (a password, a private key) must not be readable by group or
// others: like ssh with a private key, refuse rather than use a secret
// that may have leaked.
func readBounded(path string, secret bool) ([]byte, error) {
	var check func(fs.FileInfo) error
	if secret {
		check = func(fi fs.FileInfo) error {
			if fi.Mode().Perm()&0o077 != 0 {
				return fmt.Errorf("%s has mode %04o: a secret must not be readable or writable by group or others (chmod 600)", path, fi.Mode().Perm())
			}
			return nil
		}
	}
	return input.ReadFile(path, maxSecretFile, "a credential", check)
}
