// Package burst reproduces the burst load (15 parallel checks of 256 addresses) against a running
// agent and keeps the books: a namespace LAN where one neighbour owns
// 10.77.0.1 and fd77::1, and bursts of parallel check requests of up to 256
// addresses each, the neighbour's two addresses among them and every other
// address with the neighbour as its gateway. Every address deserves a known
// verdict, so every answer is right, an error, or wrong: a busy address that
// passed, or a free address whose answering gateway was blocked.
//
// test/e2e asserts on it in `make test` at a modest size; test/bench's fault
// suite runs that full size and four times that.
package burst

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/control"
	"github.com/spiderpool-agent/spiderpool-agent/core/state"
	"github.com/spiderpool-agent/spiderpool-agent/test/netlab"
)

// The neighbour and its addresses: it is the busy host and the gateway.
const (
	NeighbourMAC = "02:00:00:00:77:01"
	NodeMAC      = "02:00:00:00:77:02"
	Busy4        = "10.77.0.1"
	Busy6        = "fd77::1"
)

// LAN is a bridge with the node (no address of its own) and the neighbour.
type LAN struct {
	*netlab.LAN
	Node, Neighbour *netlab.Host
}

// NewLAN builds the LAN; it is removed when t ends.
func NewLAN(t testing.TB) *LAN {
	t.Helper()
	l := netlab.NewLAN(t)
	return &LAN{
		LAN:       l,
		Node:      l.AddHost("bnode", NodeMAC),
		Neighbour: l.AddHost("bnb", NeighbourMAC, Busy4+"/16", Busy6+"/64"),
	}
}

// Request is one check request of size addresses (2 to 256): the
// neighbour's two addresses without gateway (they deserve block), the rest
// free addresses, IPv4 and IPv6 in turn, with the neighbour as gateway
// (they deserve pass). seq makes the free addresses of different requests
// differ. Want holds the verdict each address deserves.
type Request struct {
	Req  control.CheckRequest
	Want []string
}

// NewRequest builds request seq of size addresses on the node's eth0.
func NewRequest(l *LAN, seq, size int) Request {
	r := Request{Req: control.CheckRequest{Interface: "eth0", Netns: l.Node.Path}}
	add := func(addr, gw, want string) {
		r.Req.Addresses = append(r.Req.Addresses, control.AddressRequest{Address: addr, Gateway: gw})
		r.Want = append(r.Want, want)
	}
	for i := 0; i < size; i++ {
		switch {
		case i == size/3:
			add(Busy4+"/16", "", "block")
		case i == 2*size/3:
			add(Busy6+"/64", "", "block")
		case i%2 == 0:
			// 10.77.1.0 - 10.77.255.254: never the neighbour, never .0 or .255.
			n := seq*256 + i
			add(fmt.Sprintf("10.77.%d.%d/16", 1+n/250%255, 1+n%250), Busy4, "pass")
		default:
			add(fmt.Sprintf("fd77::%x:%x/64", 1+seq, 2+i), Busy6, "pass")
		}
	}
	return r
}

// Tally counts the answers of a burst, by address.
type Tally struct {
	Addresses int // addresses asked
	Right     int
	// BusyBlocked counts busy addresses rightly blocked: the load did
	// reach the detectors and they found the neighbour.
	BusyBlocked int
	Errors      int // an address answered "error", or its request failed
	// BusyPassed: a busy address answered pass. GatewayBlocked: a free
	// address was blocked because its answering gateway was reported
	// unreachable. OtherWrong: any other wrong verdict.
	BusyPassed, GatewayBlocked, OtherWrong int
	// ErrorReasons counts the reasons of error answers (first 60 chars).
	ErrorReasons map[string]int
	// FirstWrong describes the first wrong answer.
	FirstWrong string
	// Requests, and the slowest request's wall time.
	Requests int
	Slowest  time.Duration
}

// Wrong is the number of wrong verdicts.
func (t Tally) Wrong() int { return t.BusyPassed + t.GatewayBlocked + t.OtherWrong }

// Add merges u into t.
func (t *Tally) Add(u Tally) {
	t.Addresses += u.Addresses
	t.Right += u.Right
	t.BusyBlocked += u.BusyBlocked
	t.Errors += u.Errors
	t.BusyPassed += u.BusyPassed
	t.GatewayBlocked += u.GatewayBlocked
	t.OtherWrong += u.OtherWrong
	t.Requests += u.Requests
	if u.Slowest > t.Slowest {
		t.Slowest = u.Slowest
	}
	if t.FirstWrong == "" {
		t.FirstWrong = u.FirstWrong
	}
	for k, v := range u.ErrorReasons {
		if t.ErrorReasons == nil {
			t.ErrorReasons = map[string]int{}
		}
		t.ErrorReasons[k] += v
	}
}

func (t Tally) String() string {
	s := fmt.Sprintf("%d addresses in %d requests: %d right, %d errors, %d wrong (busy passed %d, answering gateway blocked %d, other %d); slowest request %v",
		t.Addresses, t.Requests, t.Right, t.Errors, t.Wrong(), t.BusyPassed, t.GatewayBlocked, t.OtherWrong, t.Slowest.Round(time.Millisecond))
	if len(t.ErrorReasons) > 0 {
		var rs []string
		for k, v := range t.ErrorReasons {
			rs = append(rs, fmt.Sprintf("%dx %q", v, k))
		}
		s += "; errors: " + strings.Join(rs, ", ")
	}
	if t.FirstWrong != "" {
		s += "; first wrong: " + t.FirstWrong
	}
	return s
}

// Checker sends one request; *control.Client's Check fits.
type Checker func(ctx context.Context, req control.CheckRequest) (state.CheckResult, int, error)

// Run sends the requests all at once, each with its own timeout, and tallies
// the answers.
func Run(check Checker, reqs []Request, timeout time.Duration) Tally {
	var (
		mu  sync.Mutex
		all Tally
		wg  sync.WaitGroup
	)
	for _, r := range reqs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			t0 := time.Now()
			resp, code, err := check(ctx, r.Req)
			u := Judge(r, resp, code, err)
			u.Slowest = time.Since(t0)
			mu.Lock()
			all.Add(u)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}

// Judge tallies one answer against what its request deserves.
func Judge(r Request, resp state.CheckResult, code int, err error) Tally {
	t := Tally{Addresses: len(r.Want), Requests: 1, ErrorReasons: map[string]int{}}
	if err != nil || code != 200 {
		t.Errors = len(r.Want)
		t.ErrorReasons[short(fmt.Sprintf("request: %d %v", code, err))] += len(r.Want)
		return t
	}
	if len(resp.Addresses) != len(r.Want) {
		t.OtherWrong = len(r.Want)
		t.FirstWrong = fmt.Sprintf("%d addresses answered, %d asked", len(resp.Addresses), len(r.Want))
		return t
	}
	for i, a := range resp.Addresses {
		want := r.Want[i]
		switch {
		case string(a.Verdict) == want:
			t.Right++
			if want == "block" {
				t.BusyBlocked++
			}
		case a.Verdict == "error":
			t.Errors++
			for _, d := range a.Detectors {
				if d.Verdict == "error" {
					t.ErrorReasons[short(d.Name+": "+d.Reason)]++
				}
			}
		default:
			gwBlocked := false
			for _, d := range a.Detectors {
				if d.Name == "gateway-detector" && d.Verdict == "block" {
					gwBlocked = true
				}
			}
			switch {
			case want == "block" && a.Verdict == "pass":
				t.BusyPassed++
			case gwBlocked:
				t.GatewayBlocked++
			default:
				t.OtherWrong++
			}
			if t.FirstWrong == "" {
				t.FirstWrong = fmt.Sprintf("%s (gateway %s) want %s, got %s: %+v", a.Address, a.Gateway, want, a.Verdict, a.Detectors)
			}
		}
	}
	return t
}

// netnsPart is the "(netns /path)" of an engine error, which differs per
// LAN and hides the reason behind it.
var netnsPart = regexp.MustCompile(` \(netns [^)]*\)`)

// short cuts a reason to its first 80 characters, without the namespace
// path: enough to tell the kinds apart.
func short(s string) string {
	s = netnsPart.ReplaceAllString(s, "")
	if len(s) > 80 {
		return s[:80]
	}
	return s
}
