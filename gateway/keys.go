package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// API keys (optional, off by default): README "API keys and quotas".
//
// A key is a secret the client sends as "Authorization: Bearer <key>". The
// gateway never holds keys, only their SHA-256 digests, read from a file
// (Config.KeysFile, reread when it changes or on SIGHUP) and from the
// environment (Config.Keys, fixed for the process's life). Each entry is one
// line:
//
//	name:sha256hex [rate=Q/W] [concurrency=N]
//
// Quotas belong to the name, not to the digest: two lines with one name are
// two keys of one client sharing its quotas, which is how a key is rotated
// without a gap (add the new line, hand out the new key, remove the old
// line). The digest of a key is unsalted SHA-256: keys are random (pyexec-keys
// makes 256-bit ones), so a digest cannot be turned back into its key, and an
// unsalted digest lets an operator compute it with sha256sum.

// keyDigestLen is the length of a SHA-256 digest.
const keyDigestLen = sha256.Size

// KeyPolicy is one name's quotas. Zero means no limit.
type KeyPolicy struct {
	// Quota requests are allowed per Window, refilled continuously (a token
	// bucket of Quota tokens refilled at Quota/Window).
	Quota  int
	Window time.Duration
	// Concurrency caps the requests of the name in progress at once (a
	// streamed execution counts until its stream ends).
	Concurrency int
}

// keyEntry is one line: a digest and the name it admits.
type keyEntry struct {
	name   string
	digest [keyDigestLen]byte
}

// keySet is one parsed generation of the keys: the file's and the
// environment's lines together.
type keySet struct {
	entries  []keyEntry
	policies map[string]KeyPolicy
}

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ParseRate reads a rate as the keys file and -key-rate write it: "Q/W" with
// W a Go duration or one of s, m, h (for 1s, 1m, 1h), e.g. "60/m" or
// "100/10s"; "off" or "0" is no limit. The window is whole seconds, as the
// RateLimit-Policy header can only say that.
func ParseRate(s string) (quota int, window time.Duration, err error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return 0, 0, nil
	}
	qs, ws, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want QUOTA/WINDOW, e.g. 60/m, or off", s)
	}
	q, err := strconv.Atoi(qs)
	if err != nil || q <= 0 {
		return 0, 0, fmt.Errorf("rate %q: quota must be a positive integer", s)
	}
	switch ws {
	case "s", "m", "h":
		ws = "1" + ws
	}
	w, err := time.ParseDuration(ws)
	if err != nil || w < time.Second || w%time.Second != 0 {
		return 0, 0, fmt.Errorf("rate %q: window must be whole seconds (s, m, h, or a duration like 10s)", s)
	}
	return q, w, nil
}

// parseKeys reads key lines from text; source names it in errors ("file
// /etc/keys", "PYEXEC_KEYS"). sep splits entries besides newlines (the
// environment also takes commas). def is the policy of a line that sets
// none. A line that does not parse is an error naming its line: a typo must
// not silently lock a client out or lift its limit.
func parseKeys(set *keySet, text, source string, envList bool, def KeyPolicy) error {
	lines := strings.Split(text, "\n")
	if envList {
		lines = strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' })
	}
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s line %d", source, i+1)
		if envList {
			where = fmt.Sprintf("%s entry %d", source, i+1)
		}
		fields := strings.Fields(line)
		name, hexDigest, ok := strings.Cut(fields[0], ":")
		if !ok {
			return fmt.Errorf("%s: want name:sha256hex", where)
		}
		if !keyNameRE.MatchString(name) {
			return fmt.Errorf("%s: name %q: letters, digits, '.', '_', '@', '-', at most 64, starting with a letter or digit", where, name)
		}
		var e keyEntry
		e.name = name
		if b, err := hex.DecodeString(hexDigest); err != nil || len(b) != keyDigestLen {
			// Not the key itself: an operator who pasted the key here
			// learns it at once, and the key is not echoed to the log.
			return fmt.Errorf("%s: the part after %q must be the key's SHA-256 as 64 hex digits (pyexec-keys hash), not the key", where, name+":")
		} else {
			copy(e.digest[:], b)
		}
		p := def
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "rate":
				q, w, err := ParseRate(v)
				if err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				p.Quota, p.Window = q, w
			case "concurrency":
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return fmt.Errorf("%s: concurrency %q: want a non-negative integer (0 = no cap)", where, v)
				}
				p.Concurrency = n
			default:
				return fmt.Errorf("%s: unknown setting %q (want rate=Q/W or concurrency=N)", where, f)
			}
		}
		for _, o := range set.entries {
			if o.digest == e.digest {
				return fmt.Errorf("%s: the same key is listed twice (as %q and %q)", where, o.name, name)
			}
		}
		if q, seen := set.policies[name]; seen && q != p {
			return fmt.Errorf("%s: %q has other quotas on an earlier line; lines of one name share its quotas and must agree", where, name)
		}
		set.entries = append(set.entries, e)
		set.policies[name] = p
	}
	return nil
}

// keyQuota is the live state of one name's quotas. It outlives reloads, so
// rewriting the file does not refill anyone's bucket.
type keyQuota struct {
	policy   KeyPolicy
	limiter  *rate.Limiter // nil without a rate limit
	inflight int           // guarded by Keys.mu
}

// Keys holds the keys in force and the quotas' state. Its zero value is not
// usable; see newKeys.
type Keys struct {
	file string
	env  string
	def  KeyPolicy
	log  *logrus.Entry

	set atomic.Pointer[keySet]

	reloadMu sync.Mutex // one reload at a time
	fileSum  [sha256.Size]byte

	mu     sync.Mutex // guards quotas and each keyQuota's inflight
	quotas map[string]*keyQuota
}

// newKeys returns the keys cfg configures, not yet loaded, or nil when keys
// are off (no file and no environment list).
func newKeys(cfg Config, log *logrus.Entry) *Keys {
	if cfg.KeysFile == "" && strings.TrimSpace(cfg.Keys) == "" {
		return nil
	}
	q, w, _ := ParseRate(cfg.KeyRate) // Validate has checked it
	return &Keys{
		file:   cfg.KeysFile,
		env:    cfg.Keys,
		def:    KeyPolicy{Quota: q, Window: w, Concurrency: cfg.KeyConcurrency},
		log:    log.WithField("component", "keys"),
		quotas: map[string]*keyQuota{},
	}
}

// Reload rereads the keys file and puts its keys in force. When the file
// cannot be read or does not parse, the keys in force stay (a half-written
// file must not lock every client out, nor open the service) and the error
// says why. It reports whether anything changed.
func (k *Keys) Reload() (changed bool, err error) {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	var text []byte
	var sum [sha256.Size]byte
	if k.file != "" {
		text, err = os.ReadFile(k.file)
		if err != nil {
			return false, fmt.Errorf("keys file: %w", err)
		}
		sum = sha256.Sum256(text)
		if k.set.Load() != nil && sum == k.fileSum {
			return false, nil
		}
	}
	set := &keySet{policies: map[string]KeyPolicy{}}
	if err := parseKeys(set, k.env, "PYEXEC_KEYS", true, k.def); err != nil {
		return false, err
	}
	if k.file != "" {
		if err := parseKeys(set, string(text), "keys file "+k.file, false, k.def); err != nil {
			return false, err
		}
		k.fileSum = sum
	}
	k.apply(set)
	return true, nil
}

// apply puts set in force, keeping the quotas' state of the names that
// stay.
func (k *Keys) apply(set *keySet) {
	k.mu.Lock()
	for name, p := range set.policies {
		q := k.quotas[name]
		if q == nil {
			q = &keyQuota{}
			k.quotas[name] = q
		}
		if q.policy.Quota != p.Quota || q.policy.Window != p.Window {
			q.limiter = nil
			if p.Quota > 0 {
				q.limiter = rate.NewLimiter(rate.Limit(float64(p.Quota)/p.Window.Seconds()), p.Quota)
			}
		}
		q.policy = p
	}
	for name, q := range k.quotas {
		// A removed name's state goes, unless requests of it are still in
		// progress (they release it when they end).
		if _, ok := set.policies[name]; !ok && q.inflight == 0 {
			delete(k.quotas, name)
		}
	}
	k.mu.Unlock()
	k.set.Store(set)
}

// count is the number of keys in force.
func (k *Keys) count() int { return len(k.set.Load().entries) }

// lookup returns the name the presented key belongs to, or "". Every entry
// is compared, in constant time, whatever matches: the time taken says
// nothing of which digest, or how much of one, a guess came near.
func (k *Keys) lookup(key []byte) string {
	d := sha256.Sum256(key)
	name := ""
	for _, e := range k.set.Load().entries {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			name = e.name
		}
	}
	return name
}

// Why admit refused.
var (
	errRateExceeded        = errors.New("rate limit exceeded")
	errConcurrencyExceeded = errors.New("concurrency limit exceeded")
)

// admission is the state of one admitted (or refused) request of a name:
// what the RateLimit headers report.
type admission struct {
	policy KeyPolicy
	// remaining requests of the rate quota, and seconds until the next one
	// comes back (0: the bucket is full).
	remaining int
	reset     int
	// free concurrency places after this request took one.
	free int
	// retryAfter is set on a refusal: whole seconds to wait.
	retryAfter int
}

// admit takes one request of name's rate quota and one of its concurrency
// places. On success the caller must call release exactly once when the
// request is over. A refusal takes nothing.
func (k *Keys) admit(name string, now time.Time) (a admission, release func(), err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	q := k.quotas[name]
	if q == nil {
		// Removed by a reload between lookup and here: no quotas to apply;
		// the next request will not find the key.
		return a, func() {}, nil
	}
	a.policy = q.policy
	if c := q.policy.Concurrency; c > 0 && q.inflight >= c {
		a.retryAfter = 1
		a.free = 0
		a.remaining, a.reset = bucketState(q.limiter, now)
		return a, nil, errConcurrencyExceeded
	}
	if q.limiter != nil && !q.limiter.AllowN(now, 1) {
		a.remaining, a.reset = bucketState(q.limiter, now)
		// Time until one whole token is back.
		need := (1 - q.limiter.TokensAt(now)) / float64(q.limiter.Limit())
		a.retryAfter = max(1, int(math.Ceil(need)))
		a.free = max(0, q.policy.Concurrency-q.inflight)
		return a, nil, errRateExceeded
	}
	a.remaining, a.reset = bucketState(q.limiter, now)
	q.inflight++
	a.free = max(0, q.policy.Concurrency-q.inflight)
	var once sync.Once
	return a, func() {
		once.Do(func() {
			k.mu.Lock()
			q.inflight--
			k.mu.Unlock()
		})
	}, nil
}

// bucketState reads a token bucket: whole requests left, and whole seconds
// until the next one is added (0 when it is full).
func bucketState(l *rate.Limiter, now time.Time) (remaining, reset int) {
	if l == nil {
		return 0, 0
	}
	tokens := l.TokensAt(now)
	remaining = max(0, int(math.Floor(tokens)))
	if remaining >= l.Burst() {
		return l.Burst(), 0
	}
	frac := tokens - math.Floor(tokens)
	reset = max(1, int(math.Ceil((1-frac)/float64(l.Limit()))))
	return remaining, reset
}

// watch rereads the keys file every interval until stop is closed, logging
// what changed and, once per distinct error, what went wrong.
func (k *Keys) watch(stop <-chan struct{}, interval time.Duration) {
	if k.file == "" || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastErr := ""
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		changed, err := k.Reload()
		switch {
		case err != nil:
			if err.Error() != lastErr {
				k.log.WithError(err).Error("api keys not reloaded; the previous keys stay in force")
			}
			lastErr = err.Error()
		case changed:
			lastErr = ""
			k.log.WithField("keys", k.count()).Info("api keys reloaded: the file changed")
		default:
			lastErr = ""
		}
	}
}

// ReloadKeys rereads the keys file now (cmd/gateway calls it on SIGHUP). The
// keys in force stay when it fails. Without keys it does nothing.
func (g *Gateway) ReloadKeys() error {
	if g.keys == nil {
		g.log.Info("reload asked for, but api keys are off")
		return nil
	}
	changed, err := g.keys.Reload()
	if err != nil {
		g.keys.log.WithError(err).Error("api keys not reloaded; the previous keys stay in force")
		return err
	}
	g.keys.log.WithFields(logrus.Fields{"keys": g.keys.count(), "changed": changed}).Info("api keys reloaded")
	return nil
}
