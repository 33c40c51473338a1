package arpnd

import (
	"golang.org/x/net/bpf"
)

// SnapLen is how much of an accepted frame the filter keeps.
const SnapLen = 0xffff

// PacketOutgoing is PACKET_OUTGOING from <linux/if_packet.h>: a frame this
// host transmits, seen by a tap.
const PacketOutgoing = 4

// FilterBody accepts Ethernet frames that carry ARP, or IPv6 with an ICMPv6
// Neighbor Solicitation (135) or Advertisement (136) directly after the fixed
// header, and drops everything else. It uses only packet loads, so the
// x/net/bpf VM can run it in tests.
func FilterBody() []bpf.Instruction {
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: EtherTypeARP, SkipTrue: 7},
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeIPv6, SkipTrue: 5},
		/* 3 */ bpf.LoadAbsolute{Off: EthHdrLen + 6, Size: 1}, // IPv6 next header
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtoICMPv6, SkipTrue: 3},
		/* 5 */ bpf.LoadAbsolute{Off: EthHdrLen + IPv6HdrLen, Size: 1}, // ICMPv6 type
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMPNS, SkipTrue: 2},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMPNA, SkipTrue: 1},
		/* 8 */ bpf.RetConstant{Val: 0},
		/* 9 */ bpf.RetConstant{Val: SnapLen},
	}
}

// filter is the program attached to every probe socket: it first drops
// frames this host sends (the kernel copies them to packet taps as
// PACKET_OUTGOING), then applies FilterBody.
func Filter() ([]bpf.RawInstruction, error) {
	prog := []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: PacketOutgoing, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}
	return bpf.Assemble(append(prog, FilterBody()...))
}
