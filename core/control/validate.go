package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
	"github.com/spiderpool-agent/spiderpool-agent/core/input"
)

// fieldErr is a malformed request naming the field at fault in the JSON
// document ("interface", "addresses[1].gateway").
func fieldErr(field, format string, args ...any) *api.FieldError {
	return &api.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// decodeCheck reads a check request strictly: one JSON object, no unknown
// fields anywhere, every value of the right type. A malformed body is a
// *api.FieldError naming the field when there is one.
func decodeCheck(r io.Reader) (api.CheckRequest, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return api.CheckRequest{}, err // the size limit; the caller answers 413
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return api.CheckRequest{}, fieldErr("", "the request body is empty: want a JSON object with interface and addresses")
	}
	// Decode level by level, so that an error names its field with the
	// index of the address it is in.
	var top struct {
		Interface json.RawMessage `json:"interface"`
		Netns     json.RawMessage `json:"netns"`
		Addresses json.RawMessage `json:"addresses"`
	}
	if err := strictDecode(body, &top, ""); err != nil {
		return api.CheckRequest{}, err
	}
	var req api.CheckRequest
	if err := decodeField(top.Interface, &req.Interface, "interface"); err != nil {
		return api.CheckRequest{}, err
	}
	if err := decodeField(top.Netns, &req.Netns, "netns"); err != nil {
		return api.CheckRequest{}, err
	}
	var addrs []json.RawMessage
	if err := decodeField(top.Addresses, &addrs, "addresses"); err != nil {
		return api.CheckRequest{}, err
	}
	if len(addrs) > api.MaxAddresses {
		return api.CheckRequest{}, fieldErr("addresses", "%d addresses: at most %d per check", len(addrs), api.MaxAddresses)
	}
	for i, raw := range addrs {
		var a api.AddressRequest
		if err := strictDecode(raw, &a, fmt.Sprintf("addresses[%d]", i)); err != nil {
			return api.CheckRequest{}, err
		}
		req.Addresses = append(req.Addresses, a)
	}
	return req, nil
}

func decodeField(raw json.RawMessage, dst any, field string) error {
	if len(raw) == 0 {
		return nil
	}
	return strictDecode(raw, dst, field)
}

// strictDecode decodes one JSON value into dst under the agent's one
// strict rule for input (input.Decode, which the IPAM routes apply too);
// errors name fields under prefix.
func strictDecode(data []byte, dst any, prefix string) error {
	return input.Decode(data, dst, input.Options{Prefix: prefix})
}
