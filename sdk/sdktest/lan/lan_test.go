//go:build linux

package lan

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/sdk/netns"
)

func TestAHostAnswersARPOnTheLAN(t *testing.T) {
	l := New(t, "10.0.0.10/24")
	l.AddHost(t, "10.0.0.2/24")
	node := strings.TrimPrefix(l.Netns, "/var/run/netns/")
	arping := func(addr string) bool {
		return exec.Command("ip", "netns", "exec", node, "arping", "-c", "2", "-w", "2", "-I", l.Interface, addr).Run() == nil
	}
	if !arping("10.0.0.2") {
		t.Error("the host's address does not answer ARP from the workload's interface")
	}
	if arping("10.0.0.3") {
		t.Error("an address nobody owns answered")
	}
	l.SetMTU(t, 1400)
	var mtu int
	if err := netns.Do(l.Netns, func() error {
		ifi, err := net.InterfaceByName(l.Interface)
		if err == nil {
			mtu = ifi.MTU
		}
		return err
	}); err != nil || mtu != 1400 {
		t.Errorf("MTU in the workload namespace: %d, %v", mtu, err)
	}
}
