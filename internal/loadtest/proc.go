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
