package sdk

// Version is this SDK module's version: a release of it is the tag
// "sdk/" + Version of the agent's repository (Go's convention for a module
// in a subdirectory), made by the release procedure in sdk/README.md. `plugin
// new` requires it when it does not find a checkout of the SDK to bind to.
const Version = "v0.1.0"
