// Package input holds the rules every surface of the agent applies to what
// a caller sends it - the control API's bodies, the CNI plugin's network
// configuration: strict JSON decoding (Decode), bounded echoes of the
// input in errors and log lines (Quote, Cut), and bounded reads of the
// files an operator points the agent at (ReadFile). It imports only the
// standard library (and no net/http), so that the CNI plugin can link it.
package input

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxEcho bounds how many bytes of one input value an error or a log line
// repeats: enough to recognise a container id or a path, while a 10 KiB
// value sent to probe the agent does not become a 10 KiB error, log line
// or CNI result.
const MaxEcho = 128

// Quote is s quoted as %q does, cut to MaxEcho bytes when longer and then
// saying so with the full length: "abc..."... (10240 bytes, cut).
func Quote(s string) string {
	head, cut := clip(s)
	if !cut {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes, cut)", strconv.Quote(head), len(s))
}

// Cut is s unquoted, cut like Quote: for messages that print a value bare
// ("container ID interface eth0 holds no address").
func Cut(s string) string {
	head, cut := clip(s)
	if !cut {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes, cut)", head, len(s))
}

// clip returns at most MaxEcho bytes of s, not cutting a UTF-8 character
// in two, and whether it cut.
func clip(s string) (string, bool) {
	if len(s) <= MaxEcho {
		return s, false
	}
	end := MaxEcho
	for i := end; i > end-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			end = i
			break
		}
	}
	return s[:end], true
}

// CutError is err's text with every quoted echo of s in it (as the
// standard library's parsers quote their input: netip.ParsePrefix("..."))
// cut like Quote.
func CutError(err error, s string) string {
	if len(s) <= MaxEcho {
		return err.Error()
	}
	return strings.ReplaceAll(err.Error(), strconv.Quote(s), Quote(s))
}
