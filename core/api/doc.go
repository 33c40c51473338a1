// Package api is the agent's control API as one vocabulary: the paths, the
// request and answer types, the error body with its codes and the one
// table of codes and HTTP statuses (StatusOf), and the one Client over the
// control socket. The daemon's server (core/control), the CLI's commands
// and the CNI plugin all use this package, so each concept is defined once
// on each side of the socket.
//
// It imports only the standard library (and core/peercred, core/input,
// themselves standard library only), so that the CNI plugin, a binary
// exec'd once per workload interface, links no HCL, gRPC or go-plugin. Nor
// does it link net/http: the client speaks HTTP/1.0 itself (wire.go: one
// request per connection, the answer bounded in size and time, a profile
// streamed as it comes), which halves the CNI plugin. deps_test.go and
// test/layout hold it to that.
//
// The agent's own part (status, shutdown, reload, check, profiles) is in
// control.go, the check's request and answer in state.go, the IPAM part in
// types.go, the store's and the watch's in store.go and conflicts.go.
//
// Errors are ErrorBody: a 400 names the field (FieldError); other errors
// carry a Code a caller can act on (CodeTryAgain: retry later;
// CodePoolFull, ...). The client returns them as *APIError.
//
// The client believes only a trusted process on the socket (SO_PEERCRED,
// core/peercred's rule; see peer.go).
package api
