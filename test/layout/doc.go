// Package layout holds tests of the repository's shape: the dependency rule
// core -> sdk <- plugins, kept by a test rather than by good will.
package layout
