package tuner

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key     string
		wantErr string // substring; empty means valid
	}{
		{"net.ipv4.conf.all.rp_filter", ""},
		{"net/ipv4/conf/eth0.100/rp_filter", ""},
		{"net.ipv4.conf.eth0.100.rp_filter", ""},
		{"net.ipv4.conf.eth0@if3.rp_filter", ""},
		{"net.ipv4.conf.eth0:1.rp_filter", ""},
		{"net.ipv4.conf.my-if_2.rp_filter", ""},
		{"", "empty sysctl key"},
		{"/proc/sys/net/ipv4/ip_forward", "absolute"},
		{"/net.ipv4.ip_forward", "absolute"},
		{"net/../../etc/passwd", `".."`},
		{"net.ipv4..ip_forward", `".."`},
		{"net/ipv4/conf/../rp_filter", `".."`},
		{"net.ipv4.ip_forward.", "empty element"},
		{".net.ipv4.ip_forward", "empty element"},
		{"net//ipv4/ip_forward", "empty element"},
		{"net/ipv4/", "empty element"},
		{"net/./ipv4/ip_forward", `element "."`},
		{"net.ipv4.ip forward", `contains ' '`},
		{"net.ipv4.ip_forward\n", `contains '\n'`},
		{"net.ipv4.ip_forward*", `contains '*'`},
		{"net\\ipv4", `contains '\\'`},
		{"net.ipv4.é", `contains 'é'`},
		{strings.Repeat("a", maxKeyLen+1), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateKey(%q) = %v, want nil", tt.key, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateKey(%q) = %v, want error containing %q", tt.key, err, tt.wantErr)
			}
			if tt.key != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.key)) {
				t.Fatalf("error %q does not name the key", err)
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	tests := []struct {
		key  string
		want []string
	}{
		{"net.ipv4.conf.all.rp_filter", []string{"net/ipv4/conf/all/rp_filter"}},
		{"net.ipv4.ip_forward", []string{"net/ipv4/ip_forward"}},
		{"net/ipv4/conf/eth0.100/rp_filter", []string{"net/ipv4/conf/eth0.100/rp_filter"}},
		{"net.ipv4.conf.eth0.100.rp_filter", []string{"net/ipv4/conf/eth0.100/rp_filter", "net/ipv4/conf/eth0/100/rp_filter"}},
		{"net.ipv6.conf.bond0.12.34.forwarding", []string{"net/ipv6/conf/bond0.12.34/forwarding", "net/ipv6/conf/bond0/12/34/forwarding"}},
		{"net.ipv4.neigh.eth0.100.gc_stale_time", []string{"net/ipv4/neigh/eth0.100/gc_stale_time", "net/ipv4/neigh/eth0/100/gc_stale_time"}},
		{"net.ipv6.neigh.default.gc_thresh3", []string{"net/ipv6/neigh/default/gc_thresh3"}},
		{"net.ipv4.conf.rp_filter", []string{"net/ipv4/conf/rp_filter"}},
		{"net.core.eth0.100.x", []string{"net/core/eth0/100/x"}},
	}
	for _, tt := range tests {
		if got := candidates(tt.key); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("candidates(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	if keyID("net.ipv4.conf.eth0.100.rp_filter") != keyID("net/ipv4/conf/eth0.100/rp_filter") {
		t.Error("dotted and slash spelling of one key have different ids")
	}
}

func TestNormalize(t *testing.T) {
	tests := map[string]string{
		"4096\t87380\t6291456\n": "4096 87380 6291456",
		"  4096  87380 6291456 ": "4096 87380 6291456",
		"1\n":                    "1",
		"\t\n":                   "",
	}
	for in, want := range tests {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// kv renders params as "key=value" for compact comparison.
func kv(ps []Param) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Key + "=" + p.Value
	}
	return out
}

func TestDesired(t *testing.T) {
	all := []string{
		"net.ipv4.neigh.default.gc_thresh3=28160",
		"net.ipv6.neigh.default.gc_thresh3=28160",
		"net.ipv4.conf.all.arp_notify=1",
		"net.ipv4.conf.all.forwarding=1",
		"net.ipv6.conf.all.forwarding=1",
		"net.ipv4.conf.all.rp_filter=0",
	}
	tests := []struct {
		name    string
		s       Settings
		want    []string
		wantErr string
	}{
		{name: "defaults", s: DefaultSettings(), want: all},
		{name: "ipv4 only", s: Settings{EnableIPv4: true}, want: []string{
			"net.ipv4.neigh.default.gc_thresh3=28160",
			"net.ipv4.conf.all.arp_notify=1",
			"net.ipv4.conf.all.forwarding=1",
			"net.ipv4.conf.all.rp_filter=0",
		}},
		{name: "ipv6 only", s: Settings{EnableIPv6: true}, want: []string{
			"net.ipv6.neigh.default.gc_thresh3=28160",
			"net.ipv6.conf.all.forwarding=1",
			"net.ipv4.conf.all.rp_filter=0",
		}},
		{name: "no family", s: Settings{}, want: []string{}},
		{name: "no family but explicit set", s: Settings{Set: map[string]string{
			"net.ipv6.conf.all.forwarding": "0",
		}}, want: []string{"net.ipv6.conf.all.forwarding=0"}},
		{name: "override", s: Settings{EnableIPv4: true, EnableIPv6: true, Set: map[string]string{
			"net.ipv4.conf.all.rp_filter": "2",
		}}, want: []string{
			"net.ipv4.neigh.default.gc_thresh3=28160",
			"net.ipv6.neigh.default.gc_thresh3=28160",
			"net.ipv4.conf.all.arp_notify=1",
			"net.ipv4.conf.all.forwarding=1",
			"net.ipv6.conf.all.forwarding=1",
			"net.ipv4.conf.all.rp_filter=2",
		}},
		{name: "override in slash form keeps the default's name", s: Settings{EnableIPv4: true, Set: map[string]string{
			"net/ipv4/conf/all/forwarding": "0",
		}}, want: []string{
			"net.ipv4.neigh.default.gc_thresh3=28160",
			"net.ipv4.conf.all.arp_notify=1",
			"net.ipv4.conf.all.forwarding=0",
			"net.ipv4.conf.all.rp_filter=0",
		}},
		{name: "drop", s: Settings{EnableIPv4: true, EnableIPv6: true, Drop: []string{
			"net.ipv6.neigh.default.gc_thresh3", "net/ipv4/conf/all/rp_filter",
		}}, want: []string{
			"net.ipv4.neigh.default.gc_thresh3=28160",
			"net.ipv4.conf.all.arp_notify=1",
			"net.ipv4.conf.all.forwarding=1",
			"net.ipv6.conf.all.forwarding=1",
		}},
		{name: "additions sorted after defaults, values normalised", s: Settings{EnableIPv4: true, Set: map[string]string{
			"net.ipv4.tcp_rmem":                 "4096\t87380   6291456",
			"net/ipv4/conf/eth0.100/rp_filter":  "2",
			"net.ipv4.conf.eth0.200.arp_ignore": " 1 ",
		}, Drop: []string{"net.ipv4.neigh.default.gc_thresh3"}}, want: []string{
			"net.ipv4.conf.all.arp_notify=1",
			"net.ipv4.conf.all.forwarding=1",
			"net.ipv4.conf.all.rp_filter=0",
			"net.ipv4.conf.eth0.200.arp_ignore=1",
			"net.ipv4.tcp_rmem=4096 87380 6291456",
			"net/ipv4/conf/eth0.100/rp_filter=2",
		}},
		{name: "invalid set key", s: Settings{Set: map[string]string{"net/../../etc/shadow": "x"}},
			wantErr: `"net/../../etc/shadow"`},
		{name: "absolute set key", s: Settings{Set: map[string]string{"/etc/passwd": "x"}},
			wantErr: `"/etc/passwd" is an absolute path`},
		{name: "invalid drop key", s: Settings{Drop: []string{"net.ipv4..x"}}, wantErr: `drop: sysctl key "net.ipv4..x"`},
		{name: "drop of a non-default", s: Settings{Drop: []string{"net.ipv4.ip_forward"}},
			wantErr: `"net.ipv4.ip_forward" is not a default`},
		{name: "set and drop", s: Settings{Set: map[string]string{"net.ipv4.conf.all.rp_filter": "1"},
			Drop: []string{"net.ipv4.conf.all.rp_filter"}}, wantErr: `"net.ipv4.conf.all.rp_filter" is both set and dropped`},
		{name: "two spellings", s: Settings{Set: map[string]string{
			"net.ipv4.conf.eth0.100.rp_filter": "1", "net/ipv4/conf/eth0.100/rp_filter": "2",
		}}, wantErr: "name the same parameter"},
		{name: "empty value", s: Settings{Set: map[string]string{"net.ipv4.ip_forward": " \t"}},
			wantErr: `"net.ipv4.ip_forward": empty value`},
		{name: "control character in value", s: Settings{Set: map[string]string{"net.ipv4.ip_forward": "1\x00"}},
			wantErr: `"net.ipv4.ip_forward": value contains the non-printable`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Desired(tt.s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Desired() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Desired() error = %v", err)
			}
			if g := kv(got); !reflect.DeepEqual(g, tt.want) {
				t.Fatalf("Desired() =\n%q\nwant\n%q", g, tt.want)
			}
		})
	}
}

func TestDesiredMarksDefaults(t *testing.T) {
	got, err := Desired(Settings{EnableIPv4: true, Set: map[string]string{
		"net.ipv4.conf.all.rp_filter": "1", "net.ipv4.ip_forward": "1",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got {
		want := p.Key != "net.ipv4.ip_forward"
		if p.Default != want {
			t.Errorf("%s: Default = %v, want %v", p.Key, p.Default, want)
		}
	}
}
