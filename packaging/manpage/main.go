// Command manpage writes spiderpool-agent(8) in roff from the commands' own
// help (each command run with -h, so the page cannot drift from the binary)
// and from config.hcl.example, the configuration reference.
//
//	go run ./packaging/manpage -config config.hcl.example -date 2026-11-29 > spiderpool-agent.8
//
// `make man` runs it; the deb and `make install` ship the result.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/spiderpool-agent/spiderpool-agent/core/command"
	"github.com/spiderpool-agent/spiderpool-agent/core/version"
)

func main() {
	configPath := flag.String("config", "config.hcl.example", "the configuration reference to include")
	date := flag.String("date", "", "the page's date (YYYY-MM-DD); default: none")
	flag.Parse()
	cfg, err := os.ReadFile(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "manpage: %v\n", err)
		os.Exit(1)
	}
	var b bytes.Buffer
	if err := write(&b, string(cfg), *date); err != nil {
		fmt.Fprintf(os.Stderr, "manpage: %v\n", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(b.Bytes()); err != nil {
		fmt.Fprintf(os.Stderr, "manpage: %v\n", err)
		os.Exit(1)
	}
}

// help runs the CLI with args and -h and returns what it printed.
func help(args ...string) string {
	var out bytes.Buffer
	env := command.Env{Stdout: &out, Stderr: &out, Lookup: func(string) (string, bool) { return "", false }}
	command.Run(append(args, "-h"), env)
	return out.String()
}

var listed = regexp.MustCompile(`^    ([a-z][a-z-]*) {2,}(.+)$`)

// commands lists the (sub)commands a help text names, with their synopsis:
// the "Available commands are:" and "Subcommands:" blocks of hashicorp/cli.
func commands(h string) [][2]string {
	var cs [][2]string
	in := false
	sc := bufio.NewScanner(strings.NewReader(h))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "Available commands are:"), strings.HasPrefix(l, "Subcommands:"):
			in = true
		case in && listed.MatchString(l):
			m := listed.FindStringSubmatch(l)
			cs = append(cs, [2]string{m[1], strings.TrimSpace(m[2])})
		case in && strings.TrimSpace(l) == "":
		default:
			in = false
		}
	}
	return cs
}

// esc makes text safe for roff: backslashes, and a leading dot or quote.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// literal writes text as a no-fill block.
func literal(w io.Writer, text string) {
	fmt.Fprintln(w, ".nf")
	fmt.Fprintln(w, ".RS 4")
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintln(w, esc(l))
	}
	fmt.Fprintln(w, ".RE")
	fmt.Fprintln(w, ".fi")
}

var envLine = regexp.MustCompile(`^\s*# env (SPIDERPOOL_[A-Z0-9_]+)(.*)$`)
var setting = regexp.MustCompile(`^\s*([a-z_]+)\s*=\s*(.+)$`)

// envVars finds "# env NAME" in the configuration reference, with the
// setting and default that follow it and the block it is in.
func envVars(cfg string) [][3]string {
	var out [][3]string
	seen := map[string]bool{}
	var pending []string
	block := ""
	for _, l := range strings.Split(cfg, "\n") {
		t := strings.TrimSpace(l)
		if m := envLine.FindStringSubmatch(l); m != nil {
			pending = append(pending, m[1])
			continue
		}
		if strings.HasSuffix(t, "{") && !strings.HasPrefix(t, "#") {
			block = strings.TrimSpace(strings.TrimSuffix(t, "{"))
		}
		if t == "}" {
			block = ""
		}
		if m := setting.FindStringSubmatch(l); m != nil && !strings.HasPrefix(t, "#") && len(pending) > 0 {
			name := m[1]
			if block != "" && !strings.Contains(block, " ") {
				name = block + "." + name
			}
			for _, v := range pending {
				if !seen[v] {
					seen[v] = true
					out = append(out, [3]string{v, name, strings.TrimSpace(m[2])})
				}
			}
			pending = nil
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func write(w io.Writer, cfg, date string) error {
	top := help()
	cmds := commands(top)
	if len(cmds) == 0 {
		return fmt.Errorf("the CLI's help lists no commands:\n%s", top)
	}
	fmt.Fprintf(w, ".TH SPIDERPOOL\\-AGENT 8 %q %q \"System Administration\"\n", date, "spiderpool-agent "+version.Version)
	fmt.Fprintln(w, ".SH NAME")
	fmt.Fprintln(w, `spiderpool\-agent \- node agent for bare\-metal underlay networks: sysctl tuning, address conflict and gateway detection`)
	fmt.Fprintln(w, ".SH SYNOPSIS")
	fmt.Fprintln(w, `.B spiderpool\-agent`)
	fmt.Fprintln(w, `.I command`)
	fmt.Fprintln(w, `.RI [ options ]`)
	fmt.Fprintln(w, ".SH DESCRIPTION")
	fmt.Fprintln(w, `.B spiderpool\-agent daemon`)
	fmt.Fprintln(w, `runs on Linux nodes whose workloads sit directly on the underlay network
(macvlan, ipvlan, SR\-IOV, bridged VMs), normally under systemd.
It keeps the kernel's network parameters tuned (the sysctl\-tuner plugin),
and before an address is given to a workload it checks with ARP and NDP that
nobody on the wire uses it (ip\-conflict) and that its gateway answers
(gateway\-detector).
Each job is an out\-of\-process plugin that the agent supervises; third
parties add detectors through the SDK.
The other commands are clients of the running daemon's control socket, or
work on the configuration.`)
	fmt.Fprintln(w, ".SH COMMANDS")
	for _, c := range cmds {
		h := help(c[0])
		fmt.Fprintf(w, ".SS %s\n", esc(c[0]))
		fmt.Fprintln(w, esc(c[1])+".")
		literal(w, h)
		for _, sub := range commands(h) {
			fmt.Fprintf(w, ".SS %s\n", esc(c[0]+" "+sub[0]))
			fmt.Fprintln(w, esc(sub[1])+".")
			literal(w, help(c[0], sub[0]))
		}
	}
	fmt.Fprintln(w, ".SH EXIT STATUS")
	fmt.Fprintln(w, `0 success, 1 failure, 2 usage error.
.B check
exits 0 when every address passed, 1 when one is blocked and 2 when the check
could not be made.`)
	fmt.Fprintln(w, ".SH ENVIRONMENT")
	vars := envVars(cfg)
	if len(vars) == 0 {
		return fmt.Errorf("the configuration reference names no environment variables")
	}
	for _, v := range vars {
		fmt.Fprintf(w, ".TP\n.B %s\nsets \\fB%s\\fR (default %s).\n", esc(v[0]), esc(v[1]), esc(v[2]))
	}
	fmt.Fprintln(w, ".SH CONFIGURATION")
	fmt.Fprintf(w, `The daemon reads every *.hcl file of \fB\-\-config\-dir\fR (default %s;
the package passes /etc/spiderpool), merged in lexical order, over a Spiderpool conf.yml
in the same directory; environment variables override the files and flags override both.
\fBspiderpool\-agent config show\fR prints every effective value and its source.
The reference, every option with its default:
`, esc(command.DefaultConfigDir))
	literal(w, cfg)
	fmt.Fprintln(w, ".SH FILES")
	fmt.Fprintln(w, `.TP
.I /etc/spiderpool/config.hcl
the packaged configuration
.TP
.I /etc/default/spiderpool\-agent
SPIDERPOOL_* variables for the systemd unit
.TP
.I /usr/lib/spiderpool/plugins/
the plugin directory:
.I spiderpool\-plugins
is a symlink to
.IR /usr/bin/spiderpool\-agent ,
which serves the built\-in plugins when run by that name
.TP
.I /run/spidernet/spiderpool.sock
the control socket (mode 0600)
.TP
.I /usr/share/doc/spiderpool\-agent/
README, config.hcl.example, monitoring rules and dashboard`)
	fmt.Fprintln(w, ".SH SEE ALSO")
	fmt.Fprintln(w, `.BR systemctl (1),
.BR ip\-netns (8),
.BR arping (8),
.BR ndisc6 (8)`)
	return nil
}
