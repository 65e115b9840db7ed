//go:build tools

// Package tools pins the local cloud emulators that scripts/ais-local builds (kept apart from
// scripts/aisnode-build so that aisnode's dependencies never move).
package tools

import _ "github.com/fsouza/fake-gcs-server"
