package netlab

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// ARPFrame builds an Ethernet/IPv4 ARP frame of the minimum Ethernet size
// (60 bytes without FCS) from src to dst, byte by byte from RFC 826 and
// independently of sdk/arpnd's builders, so that tests of those builders and
// of the parsers behind them do not check the code with itself. An invalid
// spa or tpa leaves that protocol address zero.
func ARPFrame(dst, src net.HardwareAddr, op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	frame := make([]byte, 60)
	copy(frame[0:6], dst)
	copy(frame[6:12], src)
	binary.BigEndian.PutUint16(frame[12:14], 0x0806)
	r := frame[14:]
	binary.BigEndian.PutUint16(r[0:2], 1)
	binary.BigEndian.PutUint16(r[2:4], 0x0800)
	r[4], r[5] = 6, 4
	binary.BigEndian.PutUint16(r[6:8], op)
	copy(r[8:14], sha)
	if spa.IsValid() {
		v := spa.As4()
		copy(r[14:18], v[:])
	}
	copy(r[18:24], tha)
	if tpa.IsValid() {
		v := tpa.As4()
		copy(r[24:28], v[:])
	}
	return frame
}
