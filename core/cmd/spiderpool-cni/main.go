// Command spiderpool is the CNI IPAM plugin of spiderpool-agent, installed
// as /opt/cni/bin/spiderpool; container runtimes exec it through their main
// plugin. See core/cniplugin.
package main

import "github.com/spiderpool-agent/spiderpool-agent/core/cniplugin"

func main() { cniplugin.Main() }
