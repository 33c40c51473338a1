// Package detect runs the ip-conflict and gateway-detector plugins as the
// agent does — served in process over real gRPC with sdktest.Start — against
// LANs of network namespaces built by test/netlab, where the kernels of other
// namespaces own the busy addresses and play the gateway. It needs root and
// fails, never skips, without it.
package detect
