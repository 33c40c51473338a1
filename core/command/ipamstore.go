package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/posener/complete"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/config"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/boltstore"
)

// storeOpenTimeout bounds the wait for the store's lock of the offline
// commands: an agent holding it is named, not waited for.
const storeOpenTimeout = 2 * time.Second

// fileOperand parses args for a command that takes one FILE operand,
// before or after its options.
func fileOperand(fs *flag.FlagSet, args []string, env Env, help string) (string, int, bool) {
	var op string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		op, args = args[0], args[1:]
	}
	if code, ok := parseFlags(fs, args, env, help); !ok {
		return "", code, false
	}
	rest := fs.Args()
	if op == "" && len(rest) > 0 {
		op, rest = rest[0], rest[1:]
	}
	if op == "" || len(rest) > 0 {
		fmt.Fprintf(env.Stderr, "give one FILE\n\n%s\n", help)
		return "", ExitUsage, false
	}
	return op, 0, true
}

// --- backup

type ipamBackupCommand struct{ env Env }

func (c *ipamBackupCommand) Synopsis() string { return "Back up the running agent's IPAM store" }
func (c *ipamBackupCommand) Help() string {
	fs, _, _ := ipamFlags("ipam backup", c.env)
	fs.Bool("force", false, "replace FILE if it exists")
	return helpText("ipam backup FILE [--force] [options]", `
Asks the running agent for a consistent copy of its embedded store
(ipam.db_path) while allocations go on: the agent writes it (bbolt's
tx.WriteTo) into a temporary file next to FILE, mode 0600, verifies it and
renames it to FILE. FILE must not exist unless --force is given. The agent
writes FILE itself: the packaged agent may write only below
/var/lib/spiderpool (systemd's ProtectSystem=strict), so back up there and
copy the file off the host. Pools in etcd are backed up with etcd's own
"etcdctl snapshot save FILE". Exit 0 written, 1 failed.`, fs)
}
func (c *ipamBackupCommand) Run(args []string) int {
	fs, socket, asJSON := ipamFlags("ipam backup", c.env)
	force := fs.Bool("force", false, "replace FILE if it exists")
	file, code, ok := fileOperand(fs, args, c.env, c.Help())
	if !ok {
		return code
	}
	// The agent does not share this shell's directory.
	abs, err := filepath.Abs(file)
	if err != nil {
		return fail(c.env, "%s: %v", file, err)
	}
	req := api.BackupRequest{Path: abs, Force: *force}
	if err := req.Validate(); err != nil {
		fmt.Fprintf(c.env.Stderr, "%v\n\n%s\n", err, c.Help())
		return ExitUsage
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	res, err := (&api.Client{SocketPath: *socket}).Backup(ctx, req)
	if code, done := ipamAnswered(c.env, res, err, *asJSON); done {
		return code
	}
	fmt.Fprintf(c.env.Stdout, "backed up %s to %s: %d bytes, revision %d, in %.0f ms\n", res.Store, res.Path, res.Bytes, res.Revision, res.DurationMs)
	return ExitOK
}

// --- restore

type ipamRestoreCommand struct{ env Env }

func (c *ipamRestoreCommand) Synopsis() string {
	return "Install a backup as the IPAM store (agent stopped)"
}
func (c *ipamRestoreCommand) flags() (*storeFlags, *bool) {
	sf := newStoreFlags("ipam restore")
	return sf, sf.fs.Bool("force", false, "install the backup even if its IPAM records are inconsistent (never one that fails bbolt's check)")
}
func (c *ipamRestoreCommand) Help() string {
	sf, _ := c.flags()
	return helpText("ipam restore FILE [--force] [--config-dir DIR] [--db-path PATH]", `
Installs the backup FILE as the IPAM store, offline: stop the agent first
(systemctl stop spiderpool-agent), then start it again. The backup is
copied next to the store (ipam.db_path of the configuration, or --db-path),
the copy is checked like 'ipam check --file' (bbolt's consistency check,
then one holder per address and every record agreeing with its
attachment), and renamed over the store atomically while holding the
store's lock: a running agent makes the restore fail, naming its pid. The
copy gets the owner of the file it replaces. Exit 0 restored, 1 refused or
failed.`, sf.fs)
}
func (c *ipamRestoreCommand) Run(args []string) int {
	sf, force := c.flags()
	file, code, ok := fileOperand(sf.fs, args, c.env, c.Help())
	if !ok {
		return code
	}
	dbPath, err := sf.dbPath(c.env)
	if err != nil {
		return fail(c.env, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ipamTimeout)
	defer cancel()
	check := func(s ipam.Store) error {
		err := ipam.Consistent(ctx, s)
		if err != nil && *force {
			fmt.Fprintf(c.env.Stderr, "warning: installing despite --force: %v\n", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w\n(give --force to install it anyway)", err)
		}
		return nil
	}
	if err := boltstore.Restore(file, dbPath, check); err != nil {
		return fail(c.env, "%v", err)
	}
	fmt.Fprintf(c.env.Stdout, "restored %s to %s; start the agent (systemctl start spiderpool-agent)\n", file, dbPath)
	return ExitOK
}

// storeFlags are the offline commands' way to the store's file.
type storeFlags struct {
	fs     *flag.FlagSet
	dir    *string
	dbFlag *string
}

func newStoreFlags(name string) *storeFlags {
	fs, dir := loadFlags(name, Env{})
	return &storeFlags{fs: fs, dir: dir, dbFlag: fs.String("db-path", "", "the store file; default ipam.db_path of the configuration ("+config.DefaultIPAMDBPath+")")}
}

// dbPath is --db-path, else the configuration's ipam.db_path.
func (sf *storeFlags) dbPath(env Env) (string, error) {
	if *sf.dbFlag != "" {
		return *sf.dbFlag, nil
	}
	cfg, err := config.Load(config.LoadOptions{ConfigDir: *sf.dir, Lookup: env.Lookup})
	if err != nil {
		return "", fmt.Errorf("read ipam.db_path from %s (or give --db-path): %v", *sf.dir, err)
	}
	return cfg.IPAM.DBPath, nil
}

// --- check

type ipamCheckCommand struct{ env Env }

func (c *ipamCheckCommand) Synopsis() string { return "Check the IPAM store" }
func (c *ipamCheckCommand) flags() (*flag.FlagSet, *string, *bool, *string) {
	fs, socket, asJSON := ipamFlags("ipam check", c.env)
	return fs, socket, asJSON, fs.String("file", "", "check this store file offline (a backup, or the store of a stopped agent) instead of asking the running agent")
}
func (c *ipamCheckCommand) Help() string {
	fs, _, _, _ := c.flags()
	return helpText("ipam check [--file FILE] [options]", `
Checks the IPAM store: bbolt's consistency check of the file (pages, free
list, key order), then the records: no address held twice, and every
address record agrees with its attachment. Without --file the running
agent checks its own store on one snapshot while allocations go on (with
etcd, key range by key range: run it again if it reports an allocation
made meanwhile). With --file the file is checked offline; a running agent
on that file makes it fail naming its pid. Exit 0 consistent, 1 problems
found or the check failed.`, fs)
}
func (c *ipamCheckCommand) Run(args []string) int {
	fs, socket, asJSON, file := c.flags()
	if code, ok := parse(fs, args, c.env, c.Help()); !ok {
		return code
	}
	ctx, cancel := ipamCtx()
	defer cancel()
	var res api.StoreCheckResult
	if *file == "" {
		var err error
		if res, err = (&api.Client{SocketPath: *socket}).StoreCheck(ctx); err != nil {
			return ipamFail(c.env, err)
		}
	} else {
		start := time.Now()
		s, err := boltstore.Open(*file, boltstore.Options{ReadOnly: true, OpenTimeout: storeOpenTimeout})
		switch {
		case errors.Is(err, boltstore.ErrDamaged):
			res, _ = ipam.CheckReport(*file, 0, err, time.Since(start))
		case err != nil:
			return fail(c.env, "%v", err)
		default:
			n, cerr := s.Check(ctx)
			s.Close()
			if res, err = ipam.CheckReport(*file, n, cerr, time.Since(start)); err != nil {
				return fail(c.env, "check %s: %v", *file, err)
			}
		}
	}
	if *asJSON {
		if code := printJSON(c.env, res); code != ExitOK {
			return code
		}
	} else if res.OK {
		fmt.Fprintf(c.env.Stdout, "%s: OK (%d records, bbolt check and IPAM records consistent, %.0f ms)\n", res.Store, res.Records, res.DurationMs)
	} else {
		fmt.Fprintf(c.env.Stdout, "%s: %d problems\n", res.Store, len(res.Problems))
		for _, p := range res.Problems {
			fmt.Fprintf(c.env.Stdout, "  %s\n", p)
		}
	}
	if !res.OK {
		return ExitFail
	}
	return ExitOK
}

// Shell completion: FILE operands and --file complete file names; the
// other options as the help lists them.

func (c *ipamBackupCommand) AutocompleteArgs() complete.Predictor { return complete.PredictFiles("*") }
func (c *ipamBackupCommand) AutocompleteFlags() complete.Flags {
	return completing{c}.AutocompleteFlags()
}
func (c *ipamRestoreCommand) AutocompleteArgs() complete.Predictor { return complete.PredictFiles("*") }
func (c *ipamRestoreCommand) AutocompleteFlags() complete.Flags {
	f := completing{c}.AutocompleteFlags()
	f["--config-dir"], f["--db-path"] = complete.PredictFiles("*"), complete.PredictFiles("*")
	return f
}
func (c *ipamCheckCommand) AutocompleteArgs() complete.Predictor { return complete.PredictNothing }
func (c *ipamCheckCommand) AutocompleteFlags() complete.Flags {
	f := completing{c}.AutocompleteFlags()
	f["--file"] = complete.PredictFiles("*")
	return f
}
