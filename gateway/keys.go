package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/python-executor/python-executor/gateway/keyline"
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

// KeyPolicy is one name's quotas. Zero means no limit.
type KeyPolicy = keyline.Policy

// keyEntry is one line: a digest and the name it admits.
type keyEntry struct {
	name   string
	digest [keyline.DigestLen]byte
}

// keySet is one parsed generation of the keys: the file's and the
// environment's lines together.
type keySet struct {
	entries  []keyEntry
	policies map[string]KeyPolicy
}

// parseKeys reads key lines from text; source names it in errors ("file
// /etc/keys", "PYEXEC_KEYS"). envList: the environment's list, whose entries
// commas separate too. def is the policy of a line that sets none. A line
// that does not parse is an error naming its line: a typo must not silently
// lock a client out or lift its limit.
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
		l, err := keyline.Parse(line, def)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for _, o := range set.entries {
			if o.digest == l.Digest {
				return fmt.Errorf("%s: the same key is listed twice (as %q and %q)", where, o.name, l.Name)
			}
		}
		if q, seen := set.policies[l.Name]; seen && q != l.Policy {
			return fmt.Errorf("%s: %q has other quotas on an earlier line; lines of one name share its quotas and must agree", where, l.Name)
		}
		set.entries = append(set.entries, keyEntry{name: l.Name, digest: l.Digest})
		set.policies[l.Name] = l.Policy
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
	q, w, _ := keyline.ParseRate(cfg.KeyRate) // Validate has checked it
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
