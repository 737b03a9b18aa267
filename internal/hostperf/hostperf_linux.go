package hostperf

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func read() (counters, error) {
	c := counters{at: time.Now()}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, err
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return c, fmt.Errorf("hostperf: malformed /proc/stat")
	}
	var total, idle float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	c.cpuTotal, c.cpuBusy = total, total-idle

	mem, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return c, err
	}
	kv := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(mem))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		kv[k] = n << 10
	}
	c.memTotal = kv["MemTotal"]
	if avail, ok := kv["MemAvailable"]; ok && avail <= c.memTotal {
		c.memUsed = c.memTotal - avail
	}
	c.swapTotal = kv["SwapTotal"]
	if kv["SwapFree"] <= c.swapTotal {
		c.swapUsed = c.swapTotal - kv["SwapFree"]
	}

	if ds, err := os.ReadFile("/proc/diskstats"); err == nil {
		c.haveDisk = true
		sc := bufio.NewScanner(bytes.NewReader(ds))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			// Whole disks only: partitions would count the same bytes twice.
			if len(f) < 10 || !wholeDisk(f[2]) {
				continue
			}
			r, _ := strconv.ParseUint(f[5], 10, 64)
			w, _ := strconv.ParseUint(f[9], 10, 64)
			c.diskRead += r * 512
			c.diskWrite += w * 512
		}
	}
	if nd, err := os.ReadFile("/proc/net/dev"); err == nil {
		c.haveNet = true
		sc := bufio.NewScanner(bytes.NewReader(nd))
		for sc.Scan() {
			name, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.TrimSpace(name) == "lo" {
				continue
			}
			f := strings.Fields(rest)
			if len(f) < 9 {
				continue
			}
			rx, _ := strconv.ParseUint(f[0], 10, 64)
			tx, _ := strconv.ParseUint(f[8], 10, 64)
			c.netRx += rx
			c.netTx += tx
		}
	}
	return c, nil
}

// wholeDisk reports whether a /proc/diskstats device is a whole disk that
// /sys/block lists (sda, nvme0n1, vda), not a partition or a loop device.
func wholeDisk(name string) bool {
	if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
		return false
	}
	_, err := os.Stat("/sys/block/" + name)
	return err == nil
}
