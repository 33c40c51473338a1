// Package sdnotify tells systemd about the agent (Type=notify): READY=1 once
// startup has finished, STATUS= lines as plugin states change, STOPPING=1 and
// RELOADING=1, and WATCHDOG=1 keep-alives. Outside systemd (no
// NOTIFY_SOCKET) every call does nothing.
package sdnotify

import (
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends to $NOTIFY_SOCKET.
type Notifier struct {
	watchdog time.Duration
}

// New reads the watchdog interval systemd asked for (WATCHDOG_USEC), if any.
func New() *Notifier {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		interval = 0
	}
	return &Notifier{watchdog: interval}
}

// WatchdogInterval is how often Watchdog should be called: half the
// interval systemd enforces, or 0 when there is no watchdog.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog / 2 }

func (n *Notifier) send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// Ready says startup has finished.
func (n *Notifier) Ready(status string) error {
	return n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Status sets the one-line status `systemctl status` shows.
func (n *Notifier) Status(status string) error { return n.send("STATUS=" + status) }

// Reloading says a reload has begun; Ready ends it.
func (n *Notifier) Reloading() error {
	return n.send(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, monotonicUsec()))
}

// Stopping says a graceful stop has begun.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Watchdog is the keep-alive; call it every WatchdogInterval.
func (n *Notifier) Watchdog() error { return n.send(daemon.SdNotifyWatchdog) }
