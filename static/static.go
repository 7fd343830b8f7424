// Package static holds devport's stylesheet and the front-end packages built
// from npm into vendor/ at build time (make static); all are embedded.
package static

import "embed"

// FS is the static files, served under /static/.
//
//go:embed css js vendor favicon.svg
var FS embed.FS
