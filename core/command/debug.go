package command

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

type debugPprofCommand struct{ env Env }

func (c *debugPprofCommand) Synopsis() string {
	return "Fetch a Go profile of the running daemon over its control socket"
}

func (c *debugPprofCommand) Help() string {
	fs, _, _, _ := c.flags()
	return helpText("debug pprof [profile] [options]", fmt.Sprintf(`
Fetches a profile of the running daemon over its control socket (mode
0600: root or the agent's user only), for `+"`go tool pprof`"+` or
`+"`go tool trace`"+`. This replaces gops, which any local user can reach.

profile is one of %s (default heap).
cpu and trace run for --seconds (default %d); the others are snapshots, or
with --seconds a delta over that time. --seconds is at most %d; an answer
is at most %d MiB.`, strings.Join(api.Profiles, ", "), api.DefaultProfileSeconds,
		int(api.MaxProfileDuration/time.Second), api.MaxProfileBytes>>20), fs)
}

func (c *debugPprofCommand) flags() (*flag.FlagSet, *string, *int, *string) {
	fs := newFlags("debug pprof")
	return fs, socketFlag(fs, c.env),
		fs.Int("seconds", 0, "duration of a cpu profile or trace, or of a delta profile"),
		fs.String("o", "", "write the profile to this file (default PROFILE.pprof, or trace.out; - for stdout)")
}

func (c *debugPprofCommand) Run(args []string) int {
	fs, socket, seconds, out := c.flags()
	// The profile name may come before the options.
	name := "heap"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	if !slices.Contains(api.Profiles, name) {
		fmt.Fprintf(c.env.Stderr, "unknown profile %q: want one of %s\n\n%s\n", name, strings.Join(api.Profiles, ", "), c.Help())
		return ExitUsage
	}
	maxSec := int(api.MaxProfileDuration / time.Second)
	if *seconds < 0 || *seconds > maxSec {
		fmt.Fprintf(c.env.Stderr, "--seconds %d: want 1 to %d\n\n%s\n", *seconds, maxSec, c.Help())
		return ExitUsage
	}
	path := *out
	if path == "" {
		path = name + ".pprof"
		if name == "trace" {
			path = "trace.out"
		}
	}
	var w io.Writer = c.env.Stdout
	var f *os.File
	if path != "-" {
		var err error
		// O_EXCL: never overwrite (or follow a planted symlink to) a file.
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fail(c.env, "debug pprof: %v", err)
		}
		w = f
	}
	secs := *seconds
	if secs == 0 && (name == "cpu" || name == "trace") {
		secs = api.DefaultProfileSeconds
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+workTimeout)
	defer cancel()
	n, err := (&api.Client{SocketPath: *socket}).Profile(ctx, name, *seconds, w)
	if f != nil {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}
	if err != nil {
		return fail(c.env, "debug pprof: %v", err)
	}
	if f != nil {
		fmt.Fprintf(c.env.Stderr, "wrote the %s profile (%d bytes) to %s\n", name, n, path)
	}
	return ExitOK
}
