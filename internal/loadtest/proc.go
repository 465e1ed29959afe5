package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProcStats is what /proc tells about a process.
type ProcStats struct {
	RSS     int64 // VmRSS, bytes
	HWM     int64 // VmHWM (peak RSS), bytes
	Threads int
	CPUTime float64 // utime+stime, seconds
	FDs     int     // open files (-1 if unreadable)
}

// clockTicks is USER_HZ, 100 on Linux for every architecture Go supports.
const clockTicks = 100

// ReadProc reads /proc/<pid>/status and /proc/<pid>/stat.
func ReadProc(pid int) (ProcStats, error) {
	var st ProcStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			st.RSS = n << 10
		case "VmHWM":
			st.HWM = n << 10
		case "Threads":
			st.Threads = int(n)
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command may contain spaces: fields start after the last ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 {
		f := strings.Fields(string(b[i+1:]))
		// f[0] is field 3 (state); utime is field 14, stime field 15.
		if len(f) > 13 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			st.CPUTime = float64(u+s) / clockTicks
		}
	}
	st.FDs = -1
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		st.FDs = len(ents)
	}
	return st, nil
}

// FindListener returns the pid of the process listening on TCP port
// (IPv4 or IPv6, any address), found through /proc/net/tcp{,6} and the
// socket inodes of /proc/*/fd.
func FindListener(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A = LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		ents, err := os.ReadDir(p + "/fd")
		if err != nil {
			continue
		}
		for _, e := range ents {
			if l, err := os.Readlink(p + "/fd/" + e.Name()); err == nil && inodes[l] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the listener on port %d belongs to no visible process", port)
}

// IsLoopbackHost reports whether host (a name or address) is loopback.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SourceIPs returns n loopback source addresses 127.0.0.first.. (wrapping
// into 127.0.x.y), for rotating client bind addresses.
func SourceIPs(first, n int) ([]net.IP, error) {
	if first < 1 || n < 1 || first+n > 1<<24-1 {
		return nil, errors.New("loadtest: bad source address range")
	}
	out := make([]net.IP, n)
	for i := range n {
		v := first + i
		out[i] = net.IPv4(127, byte(v>>16), byte(v>>8), byte(v))
	}
	return out, nil
}

// MachineCPU returns the busy and total CPU time of the machine, in
// seconds summed over every CPU, from the first line of /proc/stat.
func MachineCPU() (busy, total float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("loadtest: unexpected /proc/stat")
	}
	var idle float64
	for i, s := range f[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		if i >= 8 { // guest times are included in user already
			break
		}
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return (total - idle) / clockTicks, total / clockTicks, nil
}

// CPUMeter measures, over a window, the CPU used by the machine, by the
// server and by the load processes, in cores (CPU seconds per second).
type CPUMeter struct {
	server int
	load   []int
	t0     time.Time
	m0     float64
	s0     float64
	l0     float64
}

// CPUUse is what a CPUMeter measured. Other is the machine's use by
// processes other than the server and the load: a noisy neighbour.
type CPUUse struct {
	Machine float64 `json:"machine_cores"`
	Server  float64 `json:"server_cores"`
	Load    float64 `json:"load_cores"`
	Other   float64 `json:"other_cores"`
}

func (u CPUUse) String() string {
	return fmt.Sprintf("CPU (cores): machine %.2f = server %.2f + load tool %.2f + other %.2f",
		u.Machine, u.Server, u.Load, u.Other)
}

// StartCPUMeter starts a window; server may be ≤ 0 (unknown).
func StartCPUMeter(server int, load []int) *CPUMeter {
	m := &CPUMeter{server: server, load: load, t0: time.Now()}
	m.m0, _, _ = MachineCPU()
	m.s0, m.l0 = m.procs()
	return m
}

func (m *CPUMeter) procs() (server, load float64) {
	if m.server > 0 {
		if st, err := ReadProc(m.server); err == nil {
			server = st.CPUTime
		}
	}
	for _, p := range m.load {
		if st, err := ReadProc(p); err == nil {
			load += st.CPUTime
		}
	}
	return server, load
}

// Stop ends the window.
func (m *CPUMeter) Stop() CPUUse {
	d := time.Since(m.t0).Seconds()
	mc, _, _ := MachineCPU()
	s, l := m.procs()
	u := CPUUse{Machine: (mc - m.m0) / d, Server: (s - m.s0) / d, Load: (l - m.l0) / d}
	u.Other = max(0, u.Machine-u.Server-u.Load)
	return u
}

// NetCounters are the machine's network counters that show a loopback
// fan-out overflowing the kernel: packets dropped because a CPU's input
// backlog (net.core.netdev_max_backlog) was full, and TCP segments sent
// again. On loopback every dropped segment is retransmitted after an RTO,
// which delays the frame it carried by ≥ 200 ms.
type NetCounters struct {
	// SoftnetDrops: /proc/net/softnet_stat, second column, summed over
	// the CPUs.
	SoftnetDrops int64 `json:"softnet_drops"`
	// SoftnetSqueezed: third column, net_rx_action ran out of budget or
	// time with work left.
	SoftnetSqueezed int64 `json:"softnet_squeezed"`
	// TCPRetrans: /proc/net/snmp Tcp RetransSegs.
	TCPRetrans int64 `json:"tcp_retrans_segs"`
	// ListenOverflows and ListenDrops: /proc/net/netstat TcpExt (a full
	// accept queue during the dials).
	ListenOverflows int64 `json:"listen_overflows"`
	ListenDrops     int64 `json:"listen_drops"`
}

// Sub returns n − o, counter by counter.
func (n NetCounters) Sub(o NetCounters) NetCounters {
	return NetCounters{
		SoftnetDrops:    n.SoftnetDrops - o.SoftnetDrops,
		SoftnetSqueezed: n.SoftnetSqueezed - o.SoftnetSqueezed,
		TCPRetrans:      n.TCPRetrans - o.TCPRetrans,
		ListenOverflows: n.ListenOverflows - o.ListenOverflows,
		ListenDrops:     n.ListenDrops - o.ListenDrops,
	}
}

func (n NetCounters) String() string {
	return fmt.Sprintf("softnet drops %d (squeezed %d), TCP retransmitted segments %d, listen overflows %d / drops %d",
		n.SoftnetDrops, n.SoftnetSqueezed, n.TCPRetrans, n.ListenOverflows, n.ListenDrops)
}

// ReadNetCounters reads the counters of NetCounters; one it cannot read
// is left 0 and reported in the error.
func ReadNetCounters() (NetCounters, error) {
	var n NetCounters
	var errs []error
	if b, err := os.ReadFile("/proc/net/softnet_stat"); err != nil {
		errs = append(errs, err)
	} else {
		n.SoftnetDrops, n.SoftnetSqueezed, err = parseSoftnet(b)
		errs = append(errs, err)
	}
	if b, err := os.ReadFile("/proc/net/snmp"); err != nil {
		errs = append(errs, err)
	} else {
		v, err := parseNetStat(b, "Tcp", "RetransSegs")
		n.TCPRetrans = v[0]
		errs = append(errs, err)
	}
	if b, err := os.ReadFile("/proc/net/netstat"); err != nil {
		errs = append(errs, err)
	} else {
		v, err := parseNetStat(b, "TcpExt", "ListenOverflows", "ListenDrops")
		n.ListenOverflows, n.ListenDrops = v[0], v[1]
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// parseSoftnet sums the second (dropped) and third (time_squeeze) hex
// columns of /proc/net/softnet_stat, one line per CPU.
func parseSoftnet(b []byte) (dropped, squeezed int64, err error) {
	lines := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		d, err1 := strconv.ParseUint(f[1], 16, 32)
		s, err2 := strconv.ParseUint(f[2], 16, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("loadtest: softnet_stat line %q", line)
		}
		dropped += int64(d)
		squeezed += int64(s)
		lines++
	}
	if lines == 0 {
		return 0, 0, errors.New("loadtest: empty softnet_stat")
	}
	return dropped, squeezed, nil
}

// parseNetStat reads fields of /proc/net/snmp or /proc/net/netstat, where
// each group is a line of names ("Tcp: RtoAlgorithm RtoMin …") followed by
// a line of values ("Tcp: 1 200 …").
func parseNetStat(b []byte, group string, names ...string) ([]int64, error) {
	out := make([]int64, len(names))
	lines := strings.Split(string(b), "\n")
	prefix := group + ":"
	for i := 0; i+1 < len(lines); i++ {
		hdr := strings.Fields(lines[i])
		if len(hdr) == 0 || hdr[0] != prefix {
			continue
		}
		vals := strings.Fields(lines[i+1])
		if len(vals) != len(hdr) || vals[0] != prefix {
			return out, fmt.Errorf("loadtest: %s: names and values do not match", group)
		}
		found := 0
		for k, name := range names {
			for j, h := range hdr {
				if h == name {
					v, err := strconv.ParseInt(vals[j], 10, 64)
					if err != nil {
						return out, fmt.Errorf("loadtest: %s %s: %w", group, name, err)
					}
					out[k] = v
					found++
					break
				}
			}
		}
		if found != len(names) {
			return out, fmt.Errorf("loadtest: %s: some of %v missing", group, names)
		}
		return out, nil
	}
	return out, fmt.Errorf("loadtest: no %s group", group)
}
