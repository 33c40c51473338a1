// Package sdk is everything a spiderpool-agent plugin author needs: the Go
// interfaces a plugin implements, Serve to run one as a hashicorp/go-plugin
// process, config decoding that keeps the agent config's file:line:column,
// and the gRPC client and server shims (the agent uses the client side).
//
// A plugin is a type and a main of a few lines:
//
//	func main() {
//		sdk.Serve(func(log sdk.Logger) sdk.Plugin { return mydetector.New(log) })
//	}
//
// `spiderpool-agent plugin new NAME` writes such a module. Report a value
// that parses but is wrong with RawConfig.AttrError, implement Validator so
// that `config validate` and reloads find it before anything changes, and do
// work in a request's network namespace with sdk/netns. README.md beside this
// file is the author's guide; sdk/sdktest is the conformance kit.
//
// Plugins never write to stdout: go-plugin owns it for the handshake. Logs go
// to the hclog.Logger that Serve hands over, which the agent shows under the
// plugin's name.
package sdk
