package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

func faultBadInput(s *scope, b *bins, out io.Writer) []faultRow {
	var rows []faultRow
	rows = append(rows, badConfigs(s, b, out))
	l := newLab(s, b)
	// A plain switch: br_netfilter (loaded on hosts that run Docker) would
	// otherwise validate IPv6 and ARP headers in the bridge and drop the
	// very frames under test before they reach the node.
	for _, k := range []string{"net.bridge.bridge-nf-call-arptables", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
		if _, err := os.Stat("/proc/sys/" + strings.ReplaceAll(k, ".", "/")); err == nil {
			netlab.Sysctl(s, l.lan.Bridge, k, "0")
		}
	}
	// Jumbo frames between the evil host and the node.
	evil := l.lan.AddHost("evil", "02:00:00:00:00:66")
	for _, h := range []*netlab.Host{l.lan.Node, evil} {
		netlab.IP(s, l.lan.Bridge, "link", "set", h.Port, "mtu", "9000")
		netlab.IP(s, h.NS, "link", "set", "eth0", "mtu", "9000")
	}
	netlab.IP(s, l.lan.Bridge, "link", "set", "br0", "mtu", "9000")
	a := startAgent(s, b, agentOpts{name: "inputs", nsPath: l.node, config: cfgDetect})
	a.waitReady(30 * time.Second)
	rows = append(rows, badAPI(s, a, out))
	rows = append(rows, badCLI(s, b, a, out))
	rows = append(rows, badFrames(s, l, evil, a, out))
	return rows
}

// badConfigs starts the daemon on each bad configuration.
func badConfigs(s *scope, b *bins, out io.Writer) faultRow {
	ns := netlab.NewNS(s, "cfg")
	netlab.IP(s, ns, "link", "set", "lo", "up")
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	corpus := []struct{ name, hcl, yml string }{
		{"syntax error", "log_level = \n", ""},
		{"unknown attribute", "no_such_setting = 1\n", ""},
		{"wrong type", "health_port = \"abc\"\n", ""},
		{"port out of range", "health_port = 70000\n", ""},
		{"bad duration", "shutdown_timeout = \"soon\"\n", ""},
		{"both families off", "enable_ipv4 = false\nenable_ipv6 = false\n", ""},
		{"unknown plugin attribute", "plugin \"ip-conflict\" {\n  colour = \"red\"\n}\n", ""},
		{"plugin name with capitals", "plugin \"Bad_Name\" {\n}\n", ""},
		{"malformed checksum", "plugin \"ip-conflict\" {\n  checksum = \"md5:abc\"\n}\n", ""},
		{"bad failure_policy", "plugin \"ip-conflict\" {\n  failure_policy = \"maybe\"\n}\n", ""},
		{"plugin config against its schema", "plugin \"ip-conflict\" {\n  config {\n    window = \"-1s\"\n    colour = 1\n  }\n}\n", ""},
		{"duplicate attribute", "log_level = \"info\"\nlog_level = \"debug\"\n", ""},
		{"binary junk", string(junk(4096, 7)), ""},
		{"NUL bytes", "log_level = \"in\x00fo\"\n", ""},
		{"100,000 nested brackets", "x = " + deep + "\n", ""},
		{"1 MiB string", "log_level = \"" + strings.Repeat("a", 1<<20) + "\"\n", ""},
		{"malformed conf.yml", "", "enableIPv4: [true\n  : :\n"},
		{"conf.yml with wrong types", "", "enableIPv4: \"sometimes\"\nipamUnixSocketPath: 7\n"},
	}
	clear, panics, started := 0, 0, 0
	var worst []string
	var lat sample
	for _, c := range corpus {
		dir := s.TempDir()
		body := c.hcl
		if body == "" {
			body = "log_level = \"info\"\n"
		}
		// Every file also points the agent at a private socket and plugin dir.
		pre := fmt.Sprintf("socket_path = %q\nplugin_dir = %q\n", filepath.Join(dir, "s.sock"), b.pluginDir)
		_ = os.WriteFile(filepath.Join(dir, "00-paths.hcl"), []byte(pre), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "10-bad.hcl"), []byte(body), 0o644)
		if c.yml != "" {
			_ = os.WriteFile(filepath.Join(dir, "conf.yml"), []byte(c.yml), 0o644)
		}
		// A daemon that starts anyway is killed after 3 s.
		code, took, output := runIn("/var/run/netns/"+ns, 3*time.Second, b.agent, "daemon", "--config-dir", dir)
		first := ""
		for _, line := range strings.Split(output, "\n") {
			if strings.Contains(line, "10-bad.hcl:") || strings.Contains(line, "conf.yml") || isPanicLine(line) {
				first = strings.TrimSpace(line)
				break
			}
		}
		if first == "" {
			first = strings.SplitN(strings.TrimSpace(output), "\n", 2)[0]
		}
		if len(first) > 140 {
			first = first[:140] + "…"
		}
		// Named: file:line:col, or the file alone for what concerns the
		// whole file (the 1 MiB bound on a config file's size).
		named := strings.Contains(output, "10-bad.hcl:") || strings.Contains(output, "conf.yml") ||
			(strings.Contains(output, "10-bad.hcl is ") && strings.Contains(output, "bytes"))
		panicked := hasPanic(output)
		if panicked {
			panics++
		}
		switch {
		case panicked:
			worst = append(worst, fmt.Sprintf("%s: exit %d after %s ms: %s", c.name, code, ms(took), first))
		case code == -1 && named && strings.Contains(output, "rejected"):
			// It ran, and refused the plugin's block with its position.
			started++
			clear++
		case code == -1:
			worst = append(worst, fmt.Sprintf("%s: still running after 3 s", c.name))
		case code != 0 && named:
			clear++
			lat = append(lat, took)
		default:
			worst = append(worst, fmt.Sprintf("%s: exit %d: %s", c.name, code, first))
		}
		if *verbose {
			progress("config %q: exit %d in %v: %s", c.name, code, took, first)
		}
	}
	row := faultRow{fault: "bad configuration files",
		done: fmt.Sprintf("%d bad configs (syntax, types, ranges, unknown keys, plugin schema, junk, NUL, 100,000 nested brackets, 1 MiB string, bad conf.yml); `spiderpool-agent daemon --config-dir` on each", len(corpus)),
		did: fmt.Sprintf("%d refused to start with an error naming file:line:column; %d started and refused the plugin's config block with file:line:column (the plugin failed, the agent ran); %d other",
			clear-started, started, len(corpus)-clear),
		numbers: fmt.Sprintf("refusals within p50 %s ms, max %s ms; runs that crashed: %d", ms(lat.p50()), ms(lat.max()), panics),
		held:    panics == 0 && clear == len(corpus),
	}
	if len(worst) > 0 {
		row.numbers += "; not clear: " + strings.Join(worst, " / ")
	}
	return row
}

// badAPI sends malformed requests to the control socket.
func badAPI(s *scope, a *agent, out io.Writer) faultRow {
	addrs := func(n int) string {
		var p []string
		for i := 0; i < n; i++ {
			p = append(p, fmt.Sprintf(`{"address":"10.5.%d.%d/16"}`, i/250, i%250+1))
		}
		return "[" + strings.Join(p, ",") + "]"
	}
	type req struct {
		name, method, path, ctype, body string
		want                            int // 0: any 4xx
	}
	corpus := []req{
		{"empty body", "POST", "/v1/check", "application/json", "", 400},
		{"truncated JSON", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"`, 400},
		{"JSON array", "POST", "/v1/check", "application/json", `[]`, 400},
		{"JSON null", "POST", "/v1/check", "application/json", `null`, 400},
		{"JSON string", "POST", "/v1/check", "application/json", `"check"`, 400},
		{"interface is a number", "POST", "/v1/check", "application/json", `{"interface":5,"addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"no interface", "POST", "/v1/check", "application/json", `{"addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"interface of 16 bytes", "POST", "/v1/check", "application/json", `{"interface":"abcdefghijklmnop","addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"interface with a slash", "POST", "/v1/check", "application/json", `{"interface":"../eth0","addresses":[{"address":"10.0.0.5/24"}]}`, 400},
		{"no addresses", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[]}`, 400},
		{"257 addresses", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":` + addrs(257) + `}`, 400},
		{"bare IP", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5"}]}`, 400},
		{"IPv4-mapped IPv6", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"::ffff:10.0.0.5/120"}]}`, 400},
		{"multicast", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"224.0.0.1/24"}]}`, 400},
		{"loopback", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"127.0.0.1/8"}]}`, 400},
		{"unspecified", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"0.0.0.0/0"}]}`, 400},
		{"gateway of the other family", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24","gateway":"fd00::1"}]}`, 400},
		{"gateway is the address", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24","gateway":"10.0.0.5"}]}`, 400},
		{"same address twice", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"},{"address":"10.0.0.5/24"}]}`, 400},
		{"unknown field", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"}],"colour":"red"}`, 400},
		{"two JSON documents", "POST", "/v1/check", "application/json", `{"interface":"eth0","addresses":[{"address":"10.0.0.5/24"}]}{"x":1}`, 400},
		{"relative netns", "POST", "/v1/check", "application/json", `{"interface":"eth0","netns":"netns/x","addresses":[{"address":"10.0.0.5/24"}]}`, 400},

		{"100,000 nested arrays", "POST", "/v1/check", "application/json", strings.Repeat("[", 100000) + strings.Repeat("]", 100000), 400},
		{"GET /v1/check", "GET", "/v1/check", "", "", 405},
		{"unknown path", "POST", "/v1/nope", "application/json", "{}", 404},
		{"text/plain body", "POST", "/v1/check", "text/plain", "check 10.0.0.5 please", 400},
	}
	clear, fiveXX := 0, 0
	corpusN := len(corpus)
	var notClear []string
	for _, r := range corpus {
		code, body, err := a.rawRequest(r.method, r.path, r.ctype, []byte(r.body))
		var eb api.ErrorBody
		jsonErr := json.Unmarshal(body, &eb)
		ok := err == nil && code >= 400 && code < 500 && jsonErr == nil && eb.Error != "" && (r.want == 0 || code == r.want)
		if code >= 500 {
			fiveXX++
		}
		if ok {
			clear++
		} else {
			notClear = append(notClear, fmt.Sprintf("%s: %d %v %.100s", r.name, code, err, body))
		}
		if *verbose {
			progress("api %q: %d %.120s", r.name, code, body)
		}
	}
	// An oversized body, written while the answer is read: the agent answers
	// 413 and closes before the client has written it all, which a plain
	// client reports as a broken pipe instead of the answer.
	{
		big := `{"interface":"eth0","x":"` + strings.Repeat("a", 2<<20) + `"}`
		code, body := rawHTTP(a.Socket, fmt.Sprintf("POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
		var eb api.ErrorBody
		_ = json.Unmarshal(body, &eb)
		corpusN++
		if code == 413 && eb.Error != "" {
			clear++
		} else {
			notClear = append(notClear, fmt.Sprintf("2 MiB body: %d %.100s", code, body))
		}
	}
	// Valid requests the agent cannot serve: a clear error verdict, not a 5xx.
	// Invalid UTF-8 is decoded as U+FFFD by encoding/json, which makes a
	// well-formed name of an interface that does not exist.
	valid := []struct{ name, body string }{
		{"interface name with invalid UTF-8", "{\"interface\":\"eth\xff\xfe\",\"addresses\":[{\"address\":\"10.0.0.5/24\"}]}"},
		{"interface that does not exist", `{"interface":"nope0","addresses":[{"address":"10.0.0.5/24"}]}`},
		{"netns that does not exist", `{"interface":"eth0","netns":"/var/run/netns/does-not-exist","addresses":[{"address":"10.0.0.5/24"}]}`},
	}
	errVerdicts := 0
	for _, v := range valid {
		code, body, err := a.rawRequest("POST", "/v1/check", "application/json", []byte(v.body))
		var resp api.CheckResult
		if err == nil && code == 200 && json.Unmarshal(body, &resp) == nil && len(resp.Addresses) == 1 && resp.Addresses[0].Verdict == "error" {
			if *verbose {
				progress("api %q: %.300s", v.name, body)
			}
			errVerdicts++
		} else {
			notClear = append(notClear, fmt.Sprintf("%s: %d %v %.160s", v.name, code, err, body))
		}
	}
	// Bytes that are not HTTP at all.
	rawOK := 0
	rawJunk := [][]byte{junk(512, 9), []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), []byte("POST /v1/check HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), []byte("GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 20000) + "\r\n")}
	for _, j := range rawJunk {
		c, err := net.DialTimeout("unix", a.Socket, 2*time.Second)
		if err != nil {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = c.Write(j)
		resp, _ := io.ReadAll(io.LimitReader(c, 4096))
		c.Close()
		if strings.HasPrefix(string(resp), "HTTP/1.1 4") || len(resp) == 0 {
			rawOK++
		} else {
			notClear = append(notClear, fmt.Sprintf("raw junk: %.80q", resp))
		}
	}
	ready := a.ready()
	row := faultRow{fault: "bad API bodies on the control socket",
		done: fmt.Sprintf("%d malformed requests (bad JSON, wrong types, bad names and addresses, 257 addresses, 100,000 nested arrays, 2 MiB body, wrong method/path/type), %d well-formed requests naming a missing interface (one spelled in invalid UTF-8) or netns, %d non-HTTP byte streams", corpusN, len(valid), len(rawJunk)),
		did: fmt.Sprintf("%d/%d answered 4xx with a JSON error naming the problem; %d/%d answered 200 with verdict error and the reason; %d/%d junk streams answered 400 or closed; readiness after: %v",
			clear, corpusN, errVerdicts, len(valid), rawOK, len(rawJunk), ready),
		numbers: fmt.Sprintf("5xx: %d; panics in log: %d", fiveXX, a.panics()),
		held:    clear == corpusN && errVerdicts == len(valid) && rawOK == len(rawJunk) && fiveXX == 0 && ready && a.panics() == 0,
	}
	if len(notClear) > 0 {
		row.numbers += "; not clear: " + strings.Join(notClear, " / ")
	}
	return row
}

// rawHTTP writes req to the unix socket while reading the answer, and
// returns the status code and body of the answer.
func rawHTTP(socket, req string) (int, []byte) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, body
}

// badCLI runs the CLI with bad arguments.
func badCLI(s *scope, b *bins, a *agent, out io.Writer) faultRow {
	sock := a.Socket
	corpus := [][]string{
		{},
		{"frobnicate"},
		{"check"},
		{"check", "--socket", sock, "--interface", "eth0"},
		{"check", "--socket", sock, "--ip", "10.0.0.5/24"},
		{"check", "--socket", sock, "--interface"},
		{"check", "--socket", sock, "--gateway", "10.0.0.1", "--interface", "eth0"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "not-an-ip"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5/24", "--gateway", "fd00::1"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5/24", "--gateway", "10.0.0.1", "--gateway", "10.0.0.2"},
		{"check", "--socket", sock, "--interface", "eth0", "--ip", "10.0.0.5/24", "--timeout", "banana"},
		{"check", "--socket", "/nonexistent/agent.sock", "--interface", "eth0", "--ip", "10.0.0.5/24"},
		{"check", "--socket", "/dev/null", "--interface", "eth0", "--ip", "10.0.0.5/24"},
		{"check", "--socket", sock, "--interface", strings.Repeat("x", 100000), "--ip", "10.0.0.5/24"},
		{"check", "--bogus"},
		{"daemon", "--config-dir", "/nonexistent"},
		{"daemon", "--bogus"},
		{"status", "--socket", "/nonexistent/agent.sock"},
		{"shutdown", "--socket", "/nonexistent/agent.sock"},
		{"metric", "--port", "0"},
		{"metric", "--port", "99999"},
		{"config", "validate", "--config-dir", "/nonexistent"},
		{"version", "extra", "args"},
	}
	clear, panics := 0, 0
	var notClear []string
	var lat sample
	for _, args := range corpus {
		code, took, output := runIn(a.NetnsPath, 20*time.Second, append([]string{b.agent}, args...)...)
		lat = append(lat, took)
		if hasPanic(output) {
			panics++
		}
		if code > 0 && strings.TrimSpace(output) != "" {
			clear++
		} else {
			first := strings.SplitN(strings.TrimSpace(output), "\n", 2)[0]
			notClear = append(notClear, fmt.Sprintf("`%.60s`: exit %d %.100s", strings.Join(args, " "), code, first))
		}
		if *verbose {
			progress("cli %.80q: exit %d: %.160s", args, code, output)
		}
	}
	row := faultRow{fault: "bad CLI arguments",
		done:    fmt.Sprintf("%d bad command lines (missing and unknown flags, bad addresses, gateway order, no agent, 100,000-byte interface, bad ports)", len(corpus)),
		did:     fmt.Sprintf("%d/%d exited non-zero with a message", clear, len(corpus)),
		numbers: fmt.Sprintf("exit within p50 %s ms, max %s ms; panics: %d; agent ready after: %v", ms(lat.p50()), ms(lat.max()), panics, a.ready()),
		held:    clear == len(corpus) && panics == 0,
	}
	if len(notClear) > 0 {
		row.numbers += "; not clear: " + strings.Join(notClear, " / ")
	}
	return row
}

// badFrames sends the frame corpus from the evil host while the node checks
// a fresh candidate for each frame.
func badFrames(s *scope, l *lab, evilHost *netlab.Host, a *agent, out io.Writer) faultRow {
	evil := openRaw(s, evilHost.Path)
	node := openRaw(s, l.node)
	seen := countFrom(node, evil.mac)
	defer seen.close()
	corpus := frameCorpus()
	t := newTable("Bad frames from a host on the LAN, sent during a check of the candidate they name",
		"frame", "bytes", "sent", "reached the node", "candidate's verdict", "want", "ok")
	right, delivered := 0, 0
	for i, c := range corpus {
		var cand netip.Addr
		var prefix string
		if c.family == 4 {
			cand = netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", 200+i))
			prefix = "/24"
		} else {
			cand = netip.MustParseAddr(fmt.Sprintf("fd00::6:%x", i+1))
			prefix = "/64"
		}
		frame := c.build(evil.mac, cand)
		before := seen.count(len(frame))
		done := make(chan struct{})
		var resp api.CheckResult
		var code int
		var err error
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, code, err = a.check(ctx, req1(cand.String()+prefix, ""))
		}()
		time.Sleep(15 * time.Millisecond) // the check's window is open
		sendErr := sendSpread(evil, frame, 3, 10*time.Millisecond)
		<-done
		time.Sleep(20 * time.Millisecond)
		got := seen.count(len(frame)) - before
		verdict := "?"
		if err == nil && code == 200 && len(resp.Addresses) == 1 {
			verdict = string(resp.Addresses[0].Verdict)
		} else {
			verdict = fmt.Sprintf("%d %v", code, err)
		}
		ok := verdict == c.want
		if ok {
			right++
		}
		if got >= 3 {
			delivered++
		}
		sent := "3"
		if sendErr != nil {
			sent = sendErr.Error()
		}
		t.add(c.String(), len(frame), sent, got, verdict, c.want, map[bool]string{true: "yes", false: "**no**"}[ok])
	}
	ready := a.ready()
	t.note("Each frame names its own fresh candidate and is sent 3 times, 10 ms apart, 15 ms into that candidate's check. \"reached the node\" counts the copies a packet socket on the node's eth0 saw (proof that the frame was on the wire where the ip-conflict plugin listens). The controls show that a well-formed claim from the same host is caught.")
	t.write(out)
	return faultRow{fault: "truncated, oversized and malformed frames from a host on the LAN",
		done:    fmt.Sprintf("%d kinds of frame (ARP cut short, bad sizes and operation, 9000-byte junk, NA/NS with bad length, checksum, hop limit and options; 2 well-formed controls) from a raw socket on a LAN host, MTU 9000", len(corpus)),
		did:     fmt.Sprintf("ignored every malformed frame (the candidate stayed free) and caught both controls: %d/%d verdicts as they should be; readiness after: %v", right, len(corpus), ready),
		numbers: fmt.Sprintf("%d/%d kinds reached the node; panics in log: %d; see the table above", delivered, len(corpus), a.panics()),
		held:    right == len(corpus) && delivered == len(corpus) && ready && a.panics() == 0,
	}
}
