package wire

import (
	"slices"
	"strings"
)

// Optional features are how the protocol grows without a version bump: a
// feature is a name that both peers must know for its behaviour (new message
// types, new keys whose absence would mislead, changed semantics) to be used
// on a connection. The client's hello lists the features it understands, the
// supervisor's hello answers with the ones it will use on that connection
// (always a subset of the client's list), and neither side uses a feature the
// answer does not name. Names a peer does not know are ignored, never an
// error, so a client may ask for features a supervisor has never heard of,
// and a peer without the features key (an older build) gets the base
// protocol. See PROTOCOL.md, "Features".
//
// A name is registered here, as a constant with its PROTOCOL.md section,
// before anything uses it, and is never reused for something else.

// FeatureIO: the execute message may carry args and files, the result
// message carries the files collected from output/, and the error type
// invalid_args may be sent (PROTOCOL.md, "Feature io").
const FeatureIO = "io"

// FeatureImages: the runner renders the matplotlib figures still open when
// main() returns, and the result frame carries them as PNGs (`images`,
// `images_truncated`). See PROTOCOL.md, "Feature images".
const FeatureImages = "images"

// FeatureMetrics: the client may send metrics_request (request id 0) and
// the supervisor answers each with one metrics frame carrying the Prometheus
// text exposition of its own metrics (PROTOCOL.md, "Feature metrics").
const FeatureMetrics = "metrics"

// maxFeatureName is the longest feature name a peer considers; a longer one
// cannot be registered and is ignored like any other unknown name.
const maxFeatureName = 64

// FeatureSet is an immutable set of feature names. The zero value is the
// empty set: the base protocol.
type FeatureSet struct {
	names []string // sorted, unique
}

// NewFeatureSet returns the set of names; duplicates collapse and "" (or a
// name longer than any registered one could be) is dropped.
func NewFeatureSet(names ...string) FeatureSet {
	var s []string
	for _, n := range names {
		if n != "" && len(n) <= maxFeatureName {
			s = append(s, n)
		}
	}
	slices.Sort(s)
	return FeatureSet{names: slices.Compact(s)}
}

// Has reports whether name is in the set.
func (s FeatureSet) Has(name string) bool {
	_, ok := slices.BinarySearch(s.names, name)
	return ok
}

// Len is how many names the set holds.
func (s FeatureSet) Len() int { return len(s.names) }

// Names returns the set's names sorted, or nil for the empty set (so a hello
// carrying it omits the key and encodes exactly as a base-protocol hello).
func (s FeatureSet) Names() []string {
	if len(s.names) == 0 {
		return nil
	}
	return slices.Clone(s.names)
}

// Intersect returns the names of offered that are also in s: what a peer
// supporting s agrees to use when the other side offers offered. Names s does
// not hold are ignored.
func (s FeatureSet) Intersect(offered []string) FeatureSet {
	var both []string
	for _, n := range offered {
		if s.Has(n) {
			both = append(both, n)
		}
	}
	return NewFeatureSet(both...)
}

// String lists the names comma-separated ("" for the empty set), for logs.
func (s FeatureSet) String() string { return strings.Join(s.names, ",") }
