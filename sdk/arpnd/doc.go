// Package arpnd is the one definition of the ARP and IPv6 Neighbor
// Discovery frames the agent and its detectors read and write: a parser
// that never panics on hostile input and never keeps a reference to its
// buffer, builders for the frames they send (RFC 5227 probes and
// announcements, DAD and resolution solicitations, unsolicited
// advertisements), the classic BPF program that lets only those frames
// into a packet socket, and the rule that says which address a frame claims
// for which MAC.
//
// It lives in the sdk because both sides of the dependency rule use it: the
// probe engine of the detector plugins (plugins/probe) and the agent's
// watcher of allocated addresses (core/ipam/watch).
package arpnd
