package etcdstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/etcdstore"
	"github.com/spiderpool-agent/spiderpool-agent/test/etcdlab"
)

// TestConfigErrorsNameTheField: every bad setting is refused by New with an
// error naming the field (as the operator writes it in HCL).
func TestConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	okPw := write("pw-ok", "s3cret\n", 0o600)
	openPw := write("pw-open", "s3cret\n", 0o644)
	emptyPw := write("pw-empty", "\nsecond\n", 0o600)
	hugePw := write("pw-huge", strings.Repeat("x", 70<<10), 0o600)
	notPEM := write("ca.pem", "not a certificate", 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ep := []string{"http://127.0.0.1:2379"}
	for _, tc := range []struct {
		name string
		cfg  etcdstore.Config
		want []string
	}{
		{"no endpoints", etcdstore.Config{}, []string{"etcd.endpoints", "at least one"}},
		{"not a URL", etcdstore.Config{Endpoints: []string{"127.0.0.1:2379"}}, []string{"etcd.endpoints[0]", "127.0.0.1:2379"}},
		{"no port", etcdstore.Config{Endpoints: []string{"http://a:1", "http://etcd1"}}, []string{"etcd.endpoints[1]", "no port"}},
		{"https without CA", etcdstore.Config{Endpoints: []string{"https://etcd1:2379"}}, []string{"etcd.endpoints[0]", "etcd.tls.ca_file"}},
		{"http with TLS", etcdstore.Config{Endpoints: ep, TLS: etcdstore.TLSConfig{CAFile: notPEM}}, []string{"etcd.endpoints[0]", "https://"}},
		{"prefix with space", etcdstore.Config{Endpoints: ep, Prefix: "/a b/"}, []string{"etcd.prefix"}},
		{"negative dial timeout", etcdstore.Config{Endpoints: ep, DialTimeout: -time.Second}, []string{"etcd.dial_timeout"}},
		{"negative request timeout", etcdstore.Config{Endpoints: ep, RequestTimeout: -time.Second}, []string{"etcd.request_timeout"}},
		{"cert without key", etcdstore.Config{Endpoints: []string{"https://e:2379"}, TLS: etcdstore.TLSConfig{CAFile: notPEM, CertFile: "c"}}, []string{"cert_file and key_file"}},
		{"CA not PEM", etcdstore.Config{Endpoints: []string{"https://e:2379"}, TLS: etcdstore.TLSConfig{CAFile: notPEM}}, []string{"etcd.tls.ca_file", "no PEM"}},
		{"CA missing", etcdstore.Config{Endpoints: []string{"https://e:2379"}, TLS: etcdstore.TLSConfig{CAFile: filepath.Join(dir, "nope")}}, []string{"etcd.tls.ca_file", "no such file"}},
		{"username without password", etcdstore.Config{Endpoints: ep, Username: "u"}, []string{"etcd.username and etcd.password_file"}},
		{"password readable by others", etcdstore.Config{Endpoints: ep, Username: "u", PasswordFile: openPw}, []string{"etcd.password_file", "0644", "chmod 600"}},
		{"password empty first line", etcdstore.Config{Endpoints: ep, Username: "u", PasswordFile: emptyPw}, []string{"etcd.password_file", "empty"}},
		{"password huge", etcdstore.Config{Endpoints: ep, Username: "u", PasswordFile: hugePw}, []string{"etcd.password_file", "bytes"}},
		{"password is a FIFO", etcdstore.Config{Endpoints: ep, Username: "u", PasswordFile: fifo}, []string{"etcd.password_file", "not a regular file"}},
		{"password is a directory", etcdstore.Config{Endpoints: ep, Username: "u", PasswordFile: dir}, []string{"etcd.password_file", "not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				var s *etcdstore.Store
				s, err = etcdstore.New(context.Background(), tc.cfg)
				if s != nil {
					s.Close()
				}
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("New hung")
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Without authentication New does not need etcd to be up (nothing
	// listens on this port): the agent starts and IPAM reports the store
	// down until it is back.
	s, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("a good config: %v", err)
	}
	s.Close()
	_ = okPw
}

// TestAuth: a password file with mode 0600 logs in to an etcd with
// authentication on; a wrong password is refused by New.
func TestAuth(t *testing.T) {
	c := etcdlab.Start(t, 1)
	ctx := context.Background()
	admin := newStore(t, c.Endpoints(), "/")
	cli := admin.Client()
	for _, step := range []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enable auth: %v", err)
		}
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("rootpw\n"), 0o600)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("wrong\n"), 0o600)
	s := newStore(t, c.Endpoints(), uniquePrefix(), func(cfg *etcdstore.Config) { cfg.Username, cfg.PasswordFile = "root", good })
	if _, err := s.Commit(ctx, nil, []ipam.Op{{Key: "k", Value: []byte("v")}}); err != nil {
		t.Fatalf("commit as root: %v", err)
	}
	_, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: c.Endpoints(), Username: "root", PasswordFile: bad, DialTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}
	// Without credentials the store cannot write.
	anon := newStore(t, c.Endpoints(), uniquePrefix())
	if _, err := anon.Commit(ctx, nil, []ipam.Op{{Key: "k", Value: []byte("v")}}); err == nil {
		t.Fatal("an anonymous commit succeeded with auth on")
	}

	// etcd down when the agent starts: New cannot log in, but returns a
	// store whose calls say etcd is unreachable, and which logs in and
	// works once etcd is back - no restart of the agent.
	c.Members[0].Stop()
	late, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: c.Endpoints(), Username: "root", PasswordFile: good, DialTimeout: time.Second})
	if err != nil {
		t.Fatalf("New with auth while etcd is down: %v", err)
	}
	t.Cleanup(func() { late.Close() })
	if _, err := late.Commit(ctx, nil, []ipam.Op{{Key: "late", Value: []byte("v")}}); !errors.Is(err, etcdstore.ErrUnavailable) || !strings.Contains(err.Error(), "not connected yet") {
		t.Fatalf("commit before the first login: %v", err)
	}
	c.Members[0].Restart()
	waitFor(t, 30*time.Second, "the store logs in once etcd is back", func() bool {
		_, err := late.Commit(ctx, nil, []ipam.Op{{Key: "late", Value: []byte("v")}})
		return err == nil
	})
}

// TestDefaults are the documented ones.
func TestDefaults(t *testing.T) {
	s, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1/"}, Prefix: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := s.Config()
	if c.Prefix != "/x/" || c.DialTimeout != etcdstore.DefaultDialTimeout || c.RequestTimeout != etcdstore.DefaultRequestTimeout || c.Endpoints[0] != "http://127.0.0.1:1" {
		t.Fatalf("%+v", c)
	}
}

// TestCloseBeforeConnected: with authentication on, New returns a store
// that is not connected yet when no member answers (the agent starts while
// etcd is down); closing it then (the agent stops before etcd is back)
// must not panic on the missing client.
func TestCloseBeforeConnected(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, Username: "root", PasswordFile: pw, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("New while etcd is down: %v", err)
	}
	if s.Client() != nil {
		t.Fatal("connected to nothing")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
