// Command seccompexec installs a seccomp filter shaped like the one systemd
// builds for a unit's SystemCallFilter=, SystemCallErrorNumber=EPERM,
// SystemCallArchitectures=native, RestrictAddressFamilies=,
// RestrictNamespaces= and MemoryDenyWriteExecute=, then executes a command
// under it. test/packaging uses it to run the installed agent as its unit
// would, on a machine where systemd is not running.
//
//	seccompexec -allow NR,NR,... -families AF,AF,... -ns-forbidden MASK [-mdwe] -- PROGRAM ARGS...
//
// The caller must have set no_new_privs (setpriv --no-new-privs) or hold
// CAP_SYS_ADMIN. x86-64 only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	retAllow       = unix.SECCOMP_RET_ALLOW
	retKillProcess = unix.SECCOMP_RET_KILL_PROCESS
	auditArchX8664 = unix.AUDIT_ARCH_X86_64
	x32Bit         = 0x40000000

	offNr   = 0
	offArch = 4
)

func retErrno(e syscall.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

// offArg is the offset of the low 32 bits of argument i in seccomp_data.
func offArg(i int) uint32 { return 16 + 8*uint32(i) }

type prog []unix.SockFilter

func (p *prog) stmt(code uint16, k uint32) { *p = append(*p, unix.SockFilter{Code: code, K: k}) }
func (p *prog) jump(code uint16, k uint32, jt, jf uint8) {
	*p = append(*p, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
}
func (p *prog) load(off uint32) { p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (p *prog) ret(v uint32)    { p.stmt(unix.BPF_RET|unix.BPF_K, v) }

// block appends "if nr == sys { body }", body ending in a return.
func (p *prog) block(sys uint32, body prog) {
	if len(body) > 255 {
		panic("block too long")
	}
	p.load(offNr)
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, sys, 0, uint8(len(body)))
	*p = append(*p, body...)
}

// denyFlags is a body: EPERM when the argument has any of mask's bits,
// else allow.
func denyFlags(arg int, mask uint32) prog {
	var b prog
	b.load(offArg(arg))
	b.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, mask, 0, 1)
	b.ret(retErrno(unix.EPERM))
	b.ret(retAllow)
	return b
}

func parseList(s string) ([]uint32, error) {
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 0, 32)
		if err != nil {
			return nil, err
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

func main() {
	allowArg := flag.String("allow", "", "allowed syscall numbers")
	famArg := flag.String("families", "", "allowed socket() address families")
	nsForbidden := flag.Uint64("ns-forbidden", 0, "CLONE_NEW* flags setns/unshare/clone may not use")
	mdwe := flag.Bool("mdwe", false, "MemoryDenyWriteExecute=yes")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "seccompexec: no command")
		os.Exit(2)
	}
	allowed, err := parseList(*allowArg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "seccompexec: -allow:", err)
		os.Exit(2)
	}
	families, err := parseList(*famArg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "seccompexec: -families:", err)
		os.Exit(2)
	}
	allow := map[uint32]bool{}
	for _, n := range allowed {
		allow[n] = true
	}
	forbidden := uint32(*nsForbidden)

	var p prog
	// SystemCallArchitectures=native: other ABIs are killed, x32 calls refused.
	p.load(offArch)
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, auditArchX8664, 1, 0)
	p.ret(retKillProcess)
	p.load(offNr)
	p.jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, 0, 1)
	p.ret(retErrno(unix.EPERM))

	special := map[uint32]prog{}
	if len(families) > 0 {
		// RestrictAddressFamilies=: socket() of any other family.
		var b prog
		b.load(offArg(0))
		for _, f := range families {
			b.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, f, 0, 1)
			b.ret(retAllow)
		}
		b.ret(retErrno(unix.EAFNOSUPPORT))
		special[unix.SYS_SOCKET] = b
	}
	if forbidden != 0 {
		// RestrictNamespaces=: setns() with type 0 (any) or a forbidden
		// type, unshare() and clone() with a forbidden flag; clone3()
		// cannot be inspected and says ENOSYS, so that callers fall back
		// to clone().
		var s prog
		s.load(offArg(1))
		s.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 0, 1)
		s.ret(retErrno(unix.EPERM))
		s.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, forbidden, 0, 1)
		s.ret(retErrno(unix.EPERM))
		s.ret(retAllow)
		special[unix.SYS_SETNS] = s
		special[unix.SYS_UNSHARE] = denyFlags(0, forbidden)
		special[unix.SYS_CLONE] = denyFlags(0, forbidden)
		special[unix.SYS_CLONE3] = prog{{Code: unix.BPF_RET | unix.BPF_K, K: retErrno(unix.ENOSYS)}}
	}
	if *mdwe {
		// MemoryDenyWriteExecute=: no mapping both writable and
		// executable, no mprotect() to executable.
		var m prog
		m.load(offArg(2))
		m.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, unix.PROT_EXEC|unix.PROT_WRITE)
		m.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.PROT_EXEC|unix.PROT_WRITE, 0, 1)
		m.ret(retErrno(unix.EPERM))
		m.ret(retAllow)
		special[unix.SYS_MMAP] = m
		special[unix.SYS_MPROTECT] = denyFlags(2, unix.PROT_EXEC)
		special[unix.SYS_PKEY_MPROTECT] = denyFlags(2, unix.PROT_EXEC)
	}
	var specials []uint32
	for sys := range special {
		specials = append(specials, sys)
	}
	slices.Sort(specials)
	for _, sys := range specials {
		if allow[sys] { // a call the allow list refuses stays refused
			p.block(sys, special[sys])
		}
	}
	// SystemCallFilter=: the allow list; anything else is EPERM
	// (SystemCallErrorNumber=EPERM).
	p.load(offNr)
	for _, n := range allowed {
		p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, n, 0, 1)
		p.ret(retAllow)
	}
	p.ret(retErrno(unix.EPERM))

	runtime.LockOSThread()
	fprog := unix.SockFprog{Len: uint16(len(p)), Filter: &p[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		fmt.Fprintln(os.Stderr, "seccompexec: seccomp:", errno)
		os.Exit(1)
	}
	path := flag.Arg(0)
	err = syscall.Exec(path, flag.Args(), os.Environ())
	fmt.Fprintln(os.Stderr, "seccompexec: exec", path+":", err)
	os.Exit(1)
}
