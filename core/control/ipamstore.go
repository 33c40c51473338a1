package control

import (
	"context"
	"net/http"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// IPAMStoreBackend is the store maintenance part of the IPAM API: a backup
// of the running store and a check of it. An IPAMBackend that also
// implements it gets those routes.
type IPAMStoreBackend interface {
	IPAMBackup(ctx context.Context, req api.BackupRequest) (api.BackupResult, error)
	IPAMCheck(ctx context.Context) (api.StoreCheckResult, error)
}

func (h *handler) routeIPAMStore(b IPAMStoreBackend) {
	postIPAM(h, api.BackupPath, "backup", b.IPAMBackup)
	h.route(api.StoreCheckPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		res, err := b.IPAMCheck(r.Context())
		h.answerIPAM(w, "check", res, err)
	})
}
