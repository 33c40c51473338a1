package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"

	"github.com/spiderpool-agent/spiderpool-agent/core/input"
	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// IPAMBackend is the IPAM part of the control API (the paths in
// core/ipam/ipamapi). A Backend that also implements it gets those routes.
// Requests reach it validated.
type IPAMBackend interface {
	IPAMAllocate(ctx context.Context, req ipamapi.AllocateRequest) (ipamapi.Attachment, error)
	IPAMRelease(ctx context.Context, req ipamapi.ReleaseRequest) (ipamapi.ReleaseResponse, error)
	IPAMReleaseWorkload(ctx context.Context, workload string) (ipamapi.ReleaseResponse, error)
	// IPAMGet: ok false when the key holds nothing.
	IPAMGet(ctx context.Context, key ipamapi.AttachmentKey) (att ipamapi.Attachment, ok bool, err error)
	// IPAMList answers a JSON array of ipamapi.Attachment, written out as
	// it is: a backend may pass its stored records through rather than
	// decode and encode thousands of them.
	IPAMList(ctx context.Context, pool, workload string) (json.RawMessage, error)
	IPAMGC(ctx context.Context) (ipamapi.GCResult, error)
	IPAMPools(ctx context.Context) ([]ipamapi.PoolUsage, error)
	// IPAMHistory: by workload, or by address when workload is empty.
	IPAMHistory(ctx context.Context, workload string, addr netip.Addr) ([]ipamapi.HistoryRecord, error)
	// IPAMAddress: an address's records in the pools and its history.
	IPAMAddress(ctx context.Context, addr netip.Addr) (ipamapi.AddressInfo, error)
}

// CodedError is an IPAM failure with an ipamapi code; the API answers with
// the matching status and the code in the body.
type CodedError interface {
	error
	IPAMCode() string
	IPAMSkipped() []ipamapi.SkippedIP
}

// ipamStatus maps an ipamapi code to an HTTP status.
var ipamStatus = map[string]int{
	ipamapi.CodeBadRequest:  http.StatusBadRequest,
	ipamapi.CodeUnknownPool: http.StatusBadRequest,
	ipamapi.CodeDisabled:    http.StatusConflict,
	ipamapi.CodePoolFull:    http.StatusConflict,
	ipamapi.CodeConflict:    http.StatusConflict,
	ipamapi.CodeMismatch:    http.StatusConflict,
	ipamapi.CodeGateway:     http.StatusUnprocessableEntity,
	ipamapi.CodeBlocked:     http.StatusUnprocessableEntity,
	ipamapi.CodeCheckFailed: http.StatusBadGateway,
	ipamapi.CodeTryAgain:    http.StatusServiceUnavailable,
	ipamapi.CodeNotReady:    http.StatusServiceUnavailable,
	ipamapi.CodeNotFound:    http.StatusNotFound,
	ipamapi.CodeInternal:    http.StatusInternalServerError,
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
	postIPAM(h, ipamapi.AllocatePath, "allocate", b.IPAMAllocate)
	postIPAM(h, ipamapi.ReleasePath, "release", b.IPAMRelease)
	postIPAM(h, ipamapi.ReleaseWorkloadPath, "release-workload", func(ctx context.Context, req ipamapi.ReleaseWorkloadRequest) (ipamapi.ReleaseResponse, error) {
		return b.IPAMReleaseWorkload(ctx, req.Workload)
	})
	h.route(ipamapi.AllocationPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		key := ipamapi.AttachmentKey{ContainerID: q.Get("container_id"), Interface: q.Get("interface")}
		if err := (ipamapi.ReleaseRequest{ContainerID: key.ContainerID, Interface: key.Interface}).Validate(); err != nil {
			ipamBadRequest(w, err)
			return
		}
		att, ok, err := b.IPAMGet(r.Context(), key)
		if err == nil && !ok {
			writeJSON(w, http.StatusNotFound, ipamapi.ErrorBody{Code: ipamapi.CodeNotFound,
				Error: fmt.Sprintf("container %s interface %s holds no address", input.Cut(key.ContainerID), input.Cut(key.Interface))})
			return
		}
		h.answerIPAM(w, "get", att, err)
	})
	h.route(ipamapi.AllocationsPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		pool, workload := q.Get("pool"), q.Get("workload")
		if pool != "" {
			if err := ipamapi.ValidatePoolName("pool", pool); err != nil {
				ipamBadRequest(w, err)
				return
			}
		}
		if err := ipamapi.ValidateWorkload("workload", workload); err != nil {
			ipamBadRequest(w, err)
			return
		}
		list, err := b.IPAMList(r.Context(), pool, workload)
		if err != nil {
			h.answerIPAM(w, "list", nil, err)
			return
		}
		writeRawJSON(w, http.StatusOK, list)
	})
	h.route(ipamapi.GCPath, http.MethodPost, func(w http.ResponseWriter, r *http.Request) {
		res, err := b.IPAMGC(r.Context())
		h.answerIPAM(w, "gc", res, err)
	})
	h.route(ipamapi.PoolsPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		res, err := b.IPAMPools(r.Context())
		h.answerIPAM(w, "pools", res, err)
	})
	h.route(ipamapi.HistoryPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		workload, address := q.Get("workload"), q.Get("address")
		var addr netip.Addr
		switch {
		case (workload == "") == (address == ""):
			ipamBadRequest(w, &ipamapi.FieldError{Field: "workload", Msg: "give either workload or address"})
			return
		case address != "":
			a, err := ipamapi.ParseAddress("address", address)
			if err != nil {
				ipamBadRequest(w, err)
				return
			}
			addr = a
		default:
			if err := ipamapi.ValidateWorkload("workload", workload); err != nil {
				ipamBadRequest(w, err)
				return
			}
		}
		res, err := b.IPAMHistory(r.Context(), workload, addr)
		h.answerIPAM(w, "history", res, err)
	})
	h.route(ipamapi.AddressPath, http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		addr, err := ipamapi.ParseAddress("address", r.URL.Query().Get("address"))
		if err != nil {
			ipamBadRequest(w, err)
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, ipamapi.ErrorBody{Code: ipamapi.CodeBadRequest, Error: fmt.Sprintf("the request body exceeds %d bytes (1 MiB)", MaxBodyBytes)})
		return false
	}
	if err != nil {
		ipamBadRequest(w, fmt.Errorf("read the request body: %w", err))
		return false
	}
	if err := input.Decode(body, dst, input.Options{}); err != nil {
		ipamBadRequest(w, ipamFieldError(err))
		return false
	}
	if err := dst.Validate(); err != nil {
		ipamBadRequest(w, err)
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
		return &ipamapi.FieldError{Field: fe.Field, Msg: fe.Msg}
	}
	return err
}

func ipamBadRequest(w http.ResponseWriter, err error) {
	body := ipamapi.ErrorBody{Error: err.Error(), Code: ipamapi.CodeBadRequest}
	var fe *ipamapi.FieldError
	if errors.As(err, &fe) {
		body.Field = fe.Field
	}
	writeJSON(w, http.StatusBadRequest, body)
}

func (h *handler) answerIPAM(w http.ResponseWriter, op string, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	var fe *ipamapi.FieldError
	if errors.As(err, &fe) {
		ipamBadRequest(w, err)
		return
	}
	body := ipamapi.ErrorBody{Error: err.Error(), Code: ipamapi.CodeInternal}
	var ce CodedError
	switch {
	case errors.As(err, &ce):
		body.Code, body.Skipped = ce.IPAMCode(), ce.IPAMSkipped()
	case errors.Is(err, ErrNotReady):
		body.Code = ipamapi.CodeNotReady
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		body.Code = ipamapi.CodeTryAgain
	}
	code, ok := ipamStatus[body.Code]
	if !ok {
		code = http.StatusInternalServerError
	}
	if code >= 500 && code != http.StatusServiceUnavailable {
		h.log.Warn("IPAM request failed", "op", op, "error", err)
	}
	writeJSON(w, code, body)
}
