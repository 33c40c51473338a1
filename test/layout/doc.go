// Package layout holds tests of the repository's shape: the dependency rule
// core -> sdk <- plugins, and that the core names no built-in detector
// outside its default configuration, kept by a test rather than by good will.
package layout
