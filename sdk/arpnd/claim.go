package arpnd

import "net/netip"

// Evidence names the kind of frame that makes a claim. The probe engine's
// Result.Evidence uses the same words.
const (
	EvidenceARPReply      = "arp-reply"              // ARP reply with the address as sender IP
	EvidenceARPRequest    = "arp-request"            // ARP request with the address as sender IP
	EvidenceGratuitousARP = "gratuitous-arp"         // ARP request whose sender and target IP are the address (an announcement)
	EvidenceARPProbe      = "arp-probe"              // an RFC 5227 probe for the address (sender IP 0.0.0.0)
	EvidenceNA            = "neighbor-advertisement" // NA for the address
	EvidenceDADProbe      = "dad-probe"              // a DAD solicitation for the address (from ::)
	EvidenceNDSource      = "nd-source"              // an ND message sent from the address
)

// Claim says that the station at MAC holds Addr, or is about to take it
// (a probe).
type Claim struct {
	Addr     netip.Addr
	MAC      [6]byte
	Evidence string
}

// Claims returns what f claims, at most two: the rules of RFC 5227 2.1.1
// and 2.4 for ARP (any ARP packet whose sender IP is the address, or a
// probe for it) and of RFC 4862 5.4.3/5.4.4 for ND (an advertisement for
// the address, a DAD solicitation for it, and any ND message sent from it).
// The MAC is the one the frame says holds the address: the ARP sender
// hardware address, the NA's target link-layer option or the NS's source
// link-layer option when present, else the Ethernet source. Whether the MAC
// is the holder's own is the caller's question.
func Claims(f *Frame) []Claim {
	var buf [MaxClaims]Claim
	n := ClaimsInto(f, &buf)
	if n == 0 {
		return nil
	}
	return append([]Claim(nil), buf[:n]...)
}

// MaxClaims is the most claims one frame makes.
const MaxClaims = 2

// ClaimsInto is Claims without an allocation, for a reader that looks at
// every frame on a busy link: it writes the claims into buf and returns how
// many there are.
func ClaimsInto(f *Frame, buf *[MaxClaims]Claim) int {
	switch f.Kind {
	case KindARPRequest, KindARPReply:
		switch {
		case !f.SenderIP.IsUnspecified():
			ev := EvidenceARPReply
			if f.Kind == KindARPRequest {
				ev = EvidenceARPRequest
				if f.TargetIP == f.SenderIP {
					ev = EvidenceGratuitousARP
				}
			}
			buf[0] = Claim{Addr: f.SenderIP, MAC: f.SenderMAC, Evidence: ev}
			return 1
		case f.Kind == KindARPRequest:
			buf[0] = Claim{Addr: f.TargetIP, MAC: f.SenderMAC, Evidence: EvidenceARPProbe}
			return 1
		}
	case KindNS:
		if f.IPSrc.IsUnspecified() {
			buf[0] = Claim{Addr: f.Target, MAC: f.EthSrc, Evidence: EvidenceDADProbe}
			return 1
		}
		mac := f.EthSrc
		if f.HasSrcLL {
			mac = f.SrcLL
		}
		buf[0] = Claim{Addr: f.IPSrc, MAC: mac, Evidence: EvidenceNDSource}
		return 1
	case KindNA:
		mac := f.EthSrc
		if f.HasTgtLL {
			mac = f.TgtLL
		}
		buf[0] = Claim{Addr: f.Target, MAC: mac, Evidence: EvidenceNA}
		if f.IPSrc != f.Target && !f.IPSrc.IsUnspecified() {
			buf[1] = Claim{Addr: f.IPSrc, MAC: f.EthSrc, Evidence: EvidenceNDSource}
			return 2
		}
		return 1
	}
	return 0
}
