//go:build linux

// Sending probes: retries over the pacer, and the non-blocking sendto.

package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sendRetry sends frm through the pacer (urgent: a later probe of an open
// window), retrying a failed send up to retries times with a short pause.
// It returns when the frame left.
func (s *ifSock) sendRetry(ctx context.Context, frm []byte, retries int, urgent bool, res *Result) (sendTimes, error) {
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			pause := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
			select {
			case <-ctx.Done():
				pause.Stop()
				return sendTimes{}, ctx.Err()
			case <-pause.C:
			}
		}
		at, err := s.pace.sendFrame(ctx, frm, urgent)
		if err != nil {
			if ctx.Err() != nil {
				return sendTimes{}, ctx.Err()
			}
			if errors.Is(err, ErrClosed) {
				return sendTimes{}, fmt.Errorf("%w: socket closed", ErrClosed)
			}
			last = err
			res.SendErrors++
			s.c.sendErrors.Add(1)
			continue
		}
		res.ProbesSent++
		s.c.probesSent.Add(1)
		return at, nil
	}
	return sendTimes{}, fmt.Errorf("%w after %d attempts: %w", ErrSend, retries+1, last)
}

// send writes one frame without ever blocking: a full socket buffer is a
// send error like any other, retried by the caller.
func (s *ifSock) send(frm []byte) error {
	var dst [8]byte
	copy(dst[:], frm[0:6])
	sa := &unix.SockaddrLinklayer{
		Protocol: htons(uint16(frm[12])<<8 | uint16(frm[13])), // the frame's EtherType
		Ifindex:  s.ifindex,
		Halen:    6,
		Addr:     dst,
	}
	var serr error
	err := s.raw.Write(func(fd uintptr) bool {
		for {
			serr = unix.Sendto(int(fd), frm, unix.MSG_DONTWAIT, sa)
			if serr != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("sendto", serr)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
