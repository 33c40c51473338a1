package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/spiderpool-agent/spiderpool-agent/sdk"
)

// The etcd { } block is decoded with the SDK's decoder (sdk.DecodeBody),
// the one plugins' blocks go through, rather than through keySpec: its
// endpoints are a list, and it has a nested tls { } block. It has no
// environment variables (a password belongs in password_file), so the key
// table's layering has nothing to add.

// etcdBlock is the etcd { } block as written.
type etcdBlock struct {
	Endpoints      []string      `hcl:"endpoints"`
	Prefix         string        `hcl:"prefix,optional"`
	DialTimeout    time.Duration `hcl:"dial_timeout,optional"`
	RequestTimeout time.Duration `hcl:"request_timeout,optional"`
	OutageWait     time.Duration `hcl:"outage_wait,optional"`
	Username       string        `hcl:"username,optional"`
	PasswordFile   string        `hcl:"password_file,optional"`
}

// etcdTLSBlock is the tls { } block inside it.
type etcdTLSBlock struct {
	CAFile   string `hcl:"ca_file,optional"`
	CertFile string `hcl:"cert_file,optional"`
	KeyFile  string `hcl:"key_file,optional"`
}

var etcdBlocks = []hcl.BlockHeaderSchema{{Type: "tls"}}

// decodeDiags records what sdk.DecodeBody refused; it says whether the
// block decoded.
func (l *loader) decodeDiags(err error, at hcl.Range) bool {
	if err == nil {
		return true
	}
	var ce *sdk.ConfigError
	if errors.As(err, &ce) {
		l.diags(ce.Diagnostics)
	} else {
		// A bad target struct: the program's fault, still named where.
		rng := at
		l.diags(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Undecodable block", Detail: err.Error(), Subject: &rng}})
	}
	return false
}

// applyEtcd replaces the etcd settings with those of blk (a later file's
// block replaces an earlier one's as a whole: endpoints do not merge).
// Every problem of the block is reported: the tls block is decoded even
// when an attribute of the etcd block was refused.
func (l *loader) applyEtcd(blk *hcl.Block) {
	w := etcdBlock{OutageWait: DefaultEtcdOutageWait}
	content, err := sdk.DecodeBody(blk.Body, etcdBlocks, "etcd.", &w)
	v := etcdVet{l: l, prefix: "etcd."}
	if !l.decodeDiags(err, blk.DefRange) {
		v.failed = true
	}
	if content == nil {
		return
	}
	if !v.failed {
		v.attrs = content.Attributes
		v.endpoints(w.Endpoints)
		v.check("prefix", !strings.HasPrefix(w.Prefix, "/") || strings.ContainsRune(w.Prefix, 0), "%q must start with \"/\".", w.Prefix)
		v.positive("dial_timeout", w.DialTimeout)
		v.positive("request_timeout", w.RequestTimeout)
		v.check("outage_wait", w.OutageWait > MaxEtcdOutageWait, "%q is not a duration from \"0s\" to %v (such as \"5s\").", w.OutageWait.String(), MaxEtcdOutageWait)
		v.absolute("password_file", w.PasswordFile)
		if w.Username != "" && w.PasswordFile == "" {
			v.errAt(blk.DefRange, "etcd username without password_file", "Set password_file (a file readable by root only) with the password of username.")
		}
	}
	var t etcdTLSBlock
	for i, tb := range content.Blocks {
		if i > 0 {
			v.errAt(tb.DefRange, "Duplicate tls block", "The etcd block already has a tls block; put its settings in that one.")
			continue
		}
		tc, err := sdk.DecodeBody(tb.Body, nil, "etcd.tls.", &t)
		if !l.decodeDiags(err, tb.DefRange) {
			v.failed = true
			continue
		}
		tv := etcdVet{l: l, prefix: "etcd.tls.", attrs: tc.Attributes}
		tv.absolute("ca_file", t.CAFile)
		tv.absolute("cert_file", t.CertFile)
		tv.absolute("key_file", t.KeyFile)
		v.failed = v.failed || tv.failed
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.errAt(tb.DefRange, "Incomplete etcd client certificate", "cert_file and key_file go together: set both or neither.")
		}
	}
	if !v.failed {
		l.c.Etcd = EtcdConfig{
			DeclRange: blk.DefRange, Endpoints: w.Endpoints, Prefix: w.Prefix, DialTimeout: w.DialTimeout, RequestTimeout: w.RequestTimeout,
			OutageWait: w.OutageWait, Username: w.Username, PasswordFile: w.PasswordFile,
			CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
		}
	}
}

// etcdVet checks decoded values of one block at the place of their
// attribute; values the block does not set are not checked.
type etcdVet struct {
	l      *loader
	prefix string // of the names in messages: "etcd." or "etcd.tls."
	attrs  hcl.Attributes
	failed bool
}

func (v *etcdVet) errAt(rng hcl.Range, summary, detail string) {
	v.failed = true
	v.l.diags(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: &rng}})
}

// check refuses attribute name when bad, with the detail format.
func (v *etcdVet) check(name string, bad bool, format string, a ...any) {
	attr := v.attrs[name]
	if attr == nil || !bad {
		return
	}
	v.errAt(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", v.prefix+name), fmt.Sprintf(format, a...))
}

func (v *etcdVet) positive(name string, d time.Duration) {
	v.check(name, d <= 0, "%q is not a positive duration (such as \"2s\").", d.String())
}

func (v *etcdVet) absolute(name, path string) {
	v.check(name, !filepath.IsAbs(path), "%q is not an absolute path.", path)
}

// endpoints wants a non-empty list of http(s) client URLs; the first bad
// one is named.
func (v *etcdVet) endpoints(list []string) {
	if len(list) == 0 {
		v.check("endpoints", true, "A non-empty list of client URLs is required, such as [\"http://10.0.0.1:2379\"].")
		return
	}
	for _, s := range list {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.check("endpoints", true, "%q is not a client URL (http://host:port or https://host:port).", s)
			return
		}
	}
}
