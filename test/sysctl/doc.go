// Package sysctl tests the sysctl tuner against a real kernel, inside
// fresh network namespaces, without changing the host's own sysctls.
//
// /proc/sys/net shows the network namespace of the thread that opens a
// file under it (measured: a thread that joined a namespace with setns
// reads and writes that namespace's values while the rest of the process
// sees the host's). The tuner does its I/O on the calling goroutine, so
// each test runs it on a goroutine locked to a thread that has joined the
// test's namespace; that thread is never unlocked, so it dies with the
// goroutine and nothing else ever runs in the namespace by accident.
//
// These tests need root; they fail, never skip, without it.
package sysctl
