// Package podmanlab runs the real Podman (Debian's package: its CNI network
// backend, runc, cgroupfs) for the tests and the benchmark, confined to a
// test's own network namespace and directories so that nothing of the host
// changes: its storage, run state, containers.conf and CNI network
// directory are private, and every podman command runs with its network
// namespace switched to the node's (nsenter --net, nothing else), so that
// the bridges it makes, the veths of its containers and the forwarding the
// bridge plugin turns on all live in that namespace, not on the host.
//
// The image is busybox from Debian's busybox-static package, imported from
// a tar made here: nothing is pulled from a registry.
package podmanlab

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Image is the tag of the busybox image Import makes.
const Image = "localhost/spiderpool-busybox:test"

// BusyboxPath is Debian's busybox-static executable.
const BusyboxPath = "/bin/busybox"

// DistroCNIDir is where Debian's containernetworking-plugins puts bridge,
// macvlan and the rest: the plugins Podman users run.
const DistroCNIDir = "/usr/lib/cni"

// maxRunRoot is the longest run root Podman accepts (its libpod refuses
// longer ones: the path ends up in a unix socket's address).
const maxRunRoot = 50

// Podman is one private Podman installation.
type Podman struct {
	// Store holds the images and containers and the run state; several
	// installations may share one (Podman locks it), so that the image is
	// imported once.
	Store string
	// Dir holds containers.conf and the CNI network directory (NetDir).
	Dir    string
	NetDir string
	// NetnsPath is the node's network namespace every command runs in.
	NetnsPath string
	conf      string
}

// New prepares a private Podman with its storage in store and its
// configuration in dir, whose CNI plugins are looked up in pluginDirs (in
// order) and whose commands run in the network namespace at netnsPath. The containers' nofile and nproc limits are set below the
// test process's hard limits: runc refuses to raise them (Podman's default
// nofile is 1048576) in a sandbox whose own hard limit is lower.
func New(store, dir, netnsPath string, pluginDirs ...string) (*Podman, error) {
	if run := filepath.Join(store, "run"); len(run) > maxRunRoot {
		return nil, fmt.Errorf("podman's run root %s is longer than the %d characters Podman accepts: use a shorter store directory (os.MkdirTemp(\"\", ...))", run, maxRunRoot)
	}
	p := &Podman{Store: store, Dir: dir, NetDir: filepath.Join(dir, "net.d"), NetnsPath: netnsPath, conf: filepath.Join(dir, "containers.conf")}
	if err := os.MkdirAll(p.NetDir, 0o755); err != nil {
		return nil, err
	}
	quoted := make([]string, len(pluginDirs))
	for i, d := range pluginDirs {
		quoted[i] = fmt.Sprintf("%q", d)
	}
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "cni"
cni_plugin_dirs = [%s]
network_config_dir = %q

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "none"
tmp_dir = %q
`, strings.Join(quoted, ", "), p.NetDir, filepath.Join(store, "tmp"))
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// Command is `podman ARGS` inside the node's namespace with this
// installation's storage and configuration.
func (p *Podman) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--net=" + p.NetnsPath, "podman",
		"--root", filepath.Join(p.Store, "root"), "--runroot", filepath.Join(p.Store, "run")}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	// A killed podman must not leave its children holding the test's pipes.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs `podman ARGS` and returns its standard output; an error carries
// the command, its exit and its standard error.
func (p *Podman) Run(ctx context.Context, args ...string) (string, error) {
	cmd := p.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Import makes Image from BusyboxPath: a root file system of busybox and
// the applets the tests use, as a tar that `podman import` reads.
func (p *Podman) Import(ctx context.Context) error {
	tarPath := filepath.Join(p.Dir, "busybox.tar")
	if err := writeBusyboxTar(tarPath); err != nil {
		return err
	}
	_, err := p.Run(ctx, "import", tarPath, Image)
	return err
}

func writeBusyboxTar(path string) error {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("busybox (Debian package busybox-static): %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))},
	}
	for _, applet := range []string{"sh", "ip", "sleep", "cat", "ping", "true"} {
		hdrs = append(hdrs, &tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	for _, h := range hdrs {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			f.Close()
			return err
		}
		if h.Name == "bin/busybox" {
			if _, err := io.Copy(tw, bytes.NewReader(bb)); err != nil {
				f.Close()
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Network writes a CNI network configuration list (conflist JSON) for
// network name into NetDir, where Podman's CNI backend reads it.
func (p *Podman) Network(name, conflist string) error {
	return os.WriteFile(filepath.Join(p.NetDir, name+".conflist"), []byte(conflist), 0o644)
}

// RemoveAll removes every container, whatever its state, so that each one
// gets its CNI DEL before the test's namespaces go.
func (p *Podman) RemoveAll(ctx context.Context) error {
	_, err := p.Run(ctx, "rm", "--all", "--force", "--time", "0")
	return err
}
