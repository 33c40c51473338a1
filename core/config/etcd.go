package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// The etcd { } block is parsed here rather than through keySpec: its
// endpoints are a list, and it has a nested tls { } block. It has no
// environment variables (a password belongs in password_file).
var (
	etcdSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "endpoints", Required: true}, {Name: "prefix"}, {Name: "dial_timeout"},
			{Name: "request_timeout"}, {Name: "outage_wait"}, {Name: "username"}, {Name: "password_file"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}},
	}
	etcdTLSSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "ca_file"}, {Name: "cert_file"}, {Name: "key_file"}},
	}
)

// applyEtcd replaces the etcd settings with those of blk (a later file's
// block replaces an earlier one's as a whole: endpoints do not merge).
func (l *loader) applyEtcd(blk *hcl.Block) {
	content, ds := blk.Body.Content(etcdSchema)
	l.diags(ds)
	if ds.HasErrors() {
		return
	}
	e := EtcdConfig{DeclRange: blk.DefRange, OutageWait: DefaultEtcdOutageWait}
	bad := func(attr *hcl.Attribute, format string, a ...any) {
		rng := attr.Expr.Range()
		l.diags(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: fmt.Sprintf("Invalid value for \"etcd.%s\"", attr.Name),
			Detail: fmt.Sprintf(format, a...), Subject: &rng}})
	}
	str := func(attr *hcl.Attribute, dst *string, path bool) bool {
		v, ds := attr.Expr.Value(nil)
		if ds.HasErrors() {
			l.diags(ds)
			return false
		}
		c, err := convert.Convert(v, cty.String)
		if err != nil || c.IsNull() || !c.IsWhollyKnown() {
			bad(attr, "A string is required, not %s.", v.Type().FriendlyName())
			return false
		}
		*dst = c.AsString()
		if path && !filepath.IsAbs(*dst) {
			bad(attr, "%q is not an absolute path.", *dst)
			return false
		}
		return true
	}
	dur := func(attr *hcl.Attribute, dst *time.Duration) {
		var s string
		if !str(attr, &s, false) {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			bad(attr, "%q is not a positive duration (such as \"2s\").", s)
			return
		}
		*dst = d
	}
	ok := true
	for _, attr := range sortedAttrs(content.Attributes) {
		switch attr.Name {
		case "endpoints":
			v, ds := attr.Expr.Value(nil)
			if ds.HasErrors() {
				l.diags(ds)
				ok = false
				continue
			}
			list, err := convert.Convert(v, cty.List(cty.String))
			if err != nil || list.IsNull() || !list.IsWhollyKnown() || list.LengthInt() == 0 {
				bad(attr, "A non-empty list of client URLs is required, such as [\"http://10.0.0.1:2379\"].")
				ok = false
				continue
			}
			for it := list.ElementIterator(); it.Next(); {
				_, ev := it.Element()
				if ev.IsNull() {
					bad(attr, "An endpoint is null.")
					ok = false
					break
				}
				s := ev.AsString()
				u, err := url.Parse(s)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					bad(attr, "%q is not a client URL (http://host:port or https://host:port).", s)
					ok = false
					break
				}
				e.Endpoints = append(e.Endpoints, s)
			}
		case "prefix":
			if str(attr, &e.Prefix, false) && (!strings.HasPrefix(e.Prefix, "/") || strings.ContainsRune(e.Prefix, 0)) {
				bad(attr, "%q must start with \"/\".", e.Prefix)
			}
		case "dial_timeout":
			dur(attr, &e.DialTimeout)
		case "request_timeout":
			dur(attr, &e.RequestTimeout)
		case "outage_wait":
			var v string
			if !str(attr, &v, false) {
				continue
			}
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > MaxEtcdOutageWait {
				bad(attr, "%q is not a duration from \"0s\" to %v (such as \"5s\").", v, MaxEtcdOutageWait)
				continue
			}
			e.OutageWait = d
		case "username":
			str(attr, &e.Username, false)
		case "password_file":
			str(attr, &e.PasswordFile, true)
		}
	}
	for i, tb := range content.Blocks {
		if i > 0 {
			rng := tb.DefRange
			l.diags(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Duplicate tls block",
				Detail: "The etcd block already has a tls block; put its settings in that one.", Subject: &rng}})
			continue
		}
		tc, ds := tb.Body.Content(etcdTLSSchema)
		l.diags(ds)
		for _, attr := range sortedAttrs(tc.Attributes) {
			switch attr.Name {
			case "ca_file":
				str(attr, &e.CAFile, true)
			case "cert_file":
				str(attr, &e.CertFile, true)
			case "key_file":
				str(attr, &e.KeyFile, true)
			}
		}
		if (e.CertFile == "") != (e.KeyFile == "") {
			rng := tb.DefRange
			l.diags(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Incomplete etcd client certificate",
				Detail: "cert_file and key_file go together: set both or neither.", Subject: &rng}})
		}
	}
	if e.Username != "" && e.PasswordFile == "" {
		rng := blk.DefRange
		l.diags(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "etcd username without password_file",
			Detail: "Set password_file (a file readable by root only) with the password of username.", Subject: &rng}})
	}
	if ok {
		l.c.Etcd = e
	}
}
