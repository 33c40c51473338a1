package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// IPAMBackend is the IPAM part of the control API (the paths in
// core/api). A Backend that also implements it gets those routes.
// Requests reach it validated.
type IPAMBackend interface {
	IPAMAllocate(ctx context.Context, req api.AllocateRequest) (api.Attachment, error)
	IPAMRelease(ctx context.Context, req api.ReleaseRequest) (api.ReleaseResponse, error)
	IPAMReleaseWorkload(ctx context.Context, workload string) (api.ReleaseResponse, error)
	// IPAMGet: ok false when the key holds nothing.
	IPAMGet(ctx context.Context, key api.AttachmentKey) (att api.Attachment, ok bool, err error)
	// IPAMList answers a JSON array of api.Attachment, written out as
	// it is: a backend may pass its stored records through rather than
	// decode and encode thousands of them.
	IPAMList(ctx context.Context, pool, workload string) (json.RawMessage, error)
	IPAMGC(ctx context.Context) (api.GCResult, error)
	IPAMPools(ctx context.Context) ([]api.PoolUsage, error)
	// IPAMHistory: by workload, or by address when workload is empty.
	IPAMHistory(ctx context.Context, workload string, addr netip.Addr) ([]api.HistoryRecord, error)
	// IPAMAddress: an address's records in the pools and its history.
	IPAMAddress(ctx context.Context, addr netip.Addr) (api.AddressInfo, error)
}

// CodedError is an IPAM failure with an core/api code; the API answers with
// the matching status and the code in the body.
type CodedError interface {
	error
	IPAMCode() string
	IPAMSkipped() []api.SkippedIP
}

// postIPAM routes POST path: the body, decoded and validated as a Req
// (decodeIPAM), goes to call, whose answer answerIPAM writes.
func postIPAM[Req any, PReq interface {
	*Req
	Validate() error
}, Res any](h *handler, path, op string, call func(context.Context, Req) (Res, error)) {
	h.route(path, http.MethodPost, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !h.decodeIPAM(w, r, PReq(&req)) {
			return
		}
		res, err := call(r.Context(), req)
		h.answerIPAM(w, op, res, err)
	})
}

func (h *handler) routeIPAM(b IPAMBackend) {
	postIPAM(h, api.AllocatePath, "allocate", b.IPAMAllocate)
	postIPAM(h, api.ReleasePath, "release", b.IPAMRelease)
	postIPAM(h, api.ReleaseWorkloadPath, "release-workload", func(ctx context.Context, req api.ReleaseWorkloadRequest) (api.ReleaseResponse, error) {
		return b.IPAMReleaseWorkload(ctx, req.Workload)
	})
	h.route(api.AllocationPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		key := api.AttachmentKey{ContainerID: q.Get("container_id"), Interface: q.Get("interface")}
		if err := (api.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface}).Validate(); err != nil {
			badRequest(w, err)
			return
		}
		att, ok, err := b.IPAMGet(r.Context(), key)
		if err == nil && !ok {
			writeJSON(w, http.StatusNotFound, api.ErrorBody{Code: api.CodeNotFound,
				Error: fmt.Sprintf("container %s interface %s holds no address", input.Cut(key.ContainerID), input.Cut(key.Interface))})
			return
		}
		h.answerIPAM(w, "get", att, err)
	})
	h.route(api.AllocationsPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		pool, workload := q.Get("pool"), q.Get("workload")
		if pool != "" {
			if err := api.ValidatePoolName("pool", pool); err != nil {
				badRequest(w, err)
				return
			}
		}
		if err := api.ValidateWorkload("workload", workload); err != nil {
			badRequest(w, err)
			return
		}
		list, err := b.IPAMList(r.Context(), pool, workload)
		if err != nil {
			h.answerIPAM(w, "list", nil, err)
			return
		}
		writeRawJSON(w, http.StatusOK, list)
	})
	h.route(api.GCPath, http.MethodPost, func(w http.ResponseWriter, r *http.Request) {
		res, err := b.IPAMGC(r.Context())
		h.answerIPAM(w, "gc", res, err)
	})
	h.route(api.PoolsPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		res, err := b.IPAMPools(r.Context())
		h.answerIPAM(w, "pools", res, err)
	})
	h.route(api.HistoryPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		workload, address := q.Get("workload"), q.Get("address")
		var addr netip.Addr
		switch {
		case (workload == "") == (address == ""):
			badRequest(w, &api.FieldError{Field: "workload", Msg: "give either workload or address"})
			return
		case address != "":
			a, err := api.ParseAddress("address", address)
			if err != nil {
				badRequest(w, err)
				return
			}
			addr = a
		default:
			if err := api.ValidateWorkload("workload", workload); err != nil {
				badRequest(w, err)
				return
			}
		}
		res, err := b.IPAMHistory(r.Context(), workload, addr)
		h.answerIPAM(w, "history", res, err)
	})
	h.route(api.AddressPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		addr, err := api.ParseAddress("address", r.URL.Query().Get("address"))
		if err != nil {
			badRequest(w, err)
			return
		}
		res, err := b.IPAMAddress(r.Context(), addr)
		h.answerIPAM(w, "address", res, err)
	})
}

// decodeIPAM reads a JSON body (bounded) under the rule of every body
// (input.Decode: one value, no unknown, repeated or wrong-case keys) and
// validates it; on failure it has answered.
func (h *handler) decodeIPAM(w http.ResponseWriter, r *http.Request, dst interface{ Validate() error }) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, api.ErrorBody{Code: api.CodeBadRequest, Error: fmt.Sprintf("the request body exceeds %d bytes (1 MiB)", api.MaxBodyBytes)})
		return false
	}
	if err != nil {
		badRequest(w, fmt.Errorf("read the request body: %w", err))
		return false
	}
	if err := input.Decode(body, dst, input.Options{}); err != nil {
		badRequest(w, ipamFieldError(err))
		return false
	}
	if err := dst.Validate(); err != nil {
		badRequest(w, err)
		return false
	}
	return true
}

// ipamFieldError is input.Decode's refusal as the IPAM API's field error.
func ipamFieldError(err error) error {
	var fe *input.FieldError
	switch {
	case errors.As(err, &fe) && fe.Field == "":
		return fmt.Errorf("the request body: %s", fe.Msg)
	case errors.As(err, &fe):
		return &api.FieldError{Field: fe.Field, Msg: fe.Msg}
	}
	return err
}

func (h *handler) answerIPAM(w http.ResponseWriter, op string, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	var fe *api.FieldError
	if errors.As(err, &fe) {
		badRequest(w, err)
		return
	}
	body := api.ErrorBody{Error: err.Error(), Code: api.CodeInternal}
	var ce CodedError
	switch {
	case errors.As(err, &ce):
		body.Code, body.Skipped = ce.IPAMCode(), ce.IPAMSkipped()
	case errors.Is(err, ErrNotReady):
		body.Code = api.CodeNotReady
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		body.Code = api.CodeTryAgain
	}
	code := api.StatusOf(body.Code)
	if code >= 500 && code != http.StatusServiceUnavailable {
		h.log.Warn("IPAM request failed", "op", op, "error", err)
	}
	writeJSON(w, code, body)
}
