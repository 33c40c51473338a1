# spiderpool-agent configuration, as installed by the package.
#
# The agent reads every *.hcl file in /etc/spiderpool, merged in lexical
# order of their names (a later file overrides an earlier one), over a
# Spiderpool conf.yml in the same directory, if there is one; SPIDERPOOL_*
# variables (/etc/default/spiderpool-agent) override all of them.
#
# Edit this file (it is a conffile: upgrades keep your changes and dpkg asks
# when the packaged version changes), or add your own file that sorts after
# it, e.g. /etc/spiderpool/local.hcl. Anything set here overrides files that
# sort before it, and the keys of a conf.yml; that is why almost everything
# below is commented out.
#
# Every option, with its default and its environment variable:
#   /usr/share/doc/spiderpool-agent/config.hcl.example
# Check a change, then apply it:
#   spiderpool-agent config validate --config-dir /etc/spiderpool
#   systemctl reload spiderpool-agent
# See the effective values and where each comes from:
#   spiderpool-agent config show --config-dir /etc/spiderpool

# The plugin binaries of the package (also the built-in default).
plugin_dir = "/usr/lib/spiderpool/plugins"

# Control socket. Its directory, /run/spidernet, is the unit's
# RuntimeDirectory=; a socket elsewhere needs a drop-in with ReadWritePaths=.
# socket_path = "/var/run/spidernet/spiderpool.sock"

# gops is off in the package. It has no authentication: any local user can
# read this root daemon's stacks and profiles and change its GC through
# 127.0.0.1 (e.g. `gops setgc` to switch the GC off). Use the root-only
# control socket instead:  spiderpool-agent debug pprof heap|cpu|goroutine|...
# To turn gops on anyway (the agent then warns in its log and in `status`),
# set a port here or SPIDERPOOL_GOPS_LISTEN_PORT in /etc/default/spiderpool-agent.
gops_port = 0

# log_level = "info"      # debug, info, warn, error
# health_port = 5710      # /v1/runtime/startup, /readiness, /liveness

# metrics {
#   enabled = true        # Prometheus text on :5711/metrics
# }

# The three built-in plugins run unless disabled:
# plugin "sysctl-tuner"     { enabled = false }
# plugin "ip-conflict"      { enabled = false }
# plugin "gateway-detector" { enabled = false }
