package control

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// MaxConflictsSince bounds the since of a conflicts request.
const MaxConflictsSince = 366 * 24 * time.Hour

// IPAMWatchBackend is the watch part of the IPAM API: the conflicts on
// allocated addresses recorded in the store. An IPAMBackend that also
// implements it gets the route.
type IPAMWatchBackend interface {
	// IPAMConflicts: last seen within since (0: all kept), of addr only
	// when it is valid.
	IPAMConflicts(ctx context.Context, since time.Duration, addr netip.Addr) (api.ConflictsResponse, error)
}

func (h *handler) routeIPAMWatch(b IPAMWatchBackend) {
	h.route(api.ConflictsPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var (
			since time.Duration
			addr  netip.Addr
		)
		if s := q.Get("since"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > MaxConflictsSince {
				badRequest(w, &api.FieldError{Field: "since", Msg: "must be a positive duration of at most 8784h, such as 24h"})
				return
			}
			since = d
		}
		if s := q.Get("address"); s != "" {
			a, err := api.ParseAddress("address", s)
			if err != nil {
				badRequest(w, err)
				return
			}
			addr = a
		}
		res, err := b.IPAMConflicts(r.Context(), since, addr)
		h.answerIPAM(w, "conflicts", res, err)
	})
}
