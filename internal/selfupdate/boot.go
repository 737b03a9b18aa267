package selfupdate

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
)

// BootResult tells the agent what Boot decided.
type BootResult struct {
	// Rollback: the previous good binary was put back; exit with the
	// restart code at once.
	Rollback bool
	// Quarantined lists versions never to install again.
	Quarantined []string
}

// Boot is the first thing the agent does, before reading its config or
// touching the network, so that a new version that dies anywhere later in
// its start-up is still counted:
//
//   - removes <exe>.old and <exe>.new left by the last swap;
//   - counts this start in the boot sentinel; a freshly swapped version that
//     has not reached healthy after MaxFailedBoots starts is rolled back to
//     last-good and quarantined;
//   - applies the loop guard: if the last swap's binary still reports the
//     version it replaced, its label lies and its target is refused until
//     the target changes.
func Boot(exe, running string, log *slog.Logger) (BootResult, error) {
	f := files{dir: stateDir(exe)}
	_ = os.Remove(exe + ".old")
	_ = os.Remove(exe + ".new")
	res := BootResult{Quarantined: f.quarantine()}

	var st bootState
	if _, err := f.read("boot.json", &st); err != nil {
		log.Warn("boot sentinel unreadable; starting it afresh", "err", err)
		st = bootState{}
	}
	if st.Version == running {
		if !st.Healthy {
			st.Boots++
		}
	} else {
		st = bootState{Version: running, Boots: 1}
	}
	if err := f.write("boot.json", st); err != nil {
		return res, fmt.Errorf("boot sentinel: %w", err)
	}

	lgBin, lgVerPath := f.lastGood()
	lgVer, _ := os.ReadFile(lgVerPath)
	if !st.Healthy && st.Boots > MaxFailedBoots && len(lgVer) > 0 && string(lgVer) != running {
		if _, err := os.Stat(lgBin); err == nil {
			log.Error("this version failed to become healthy; rolling back to the last good binary",
				"version", running, "boots", st.Boots-1, "last_good", string(lgVer))
			if err := f.addQuarantine(running); err != nil {
				return res, fmt.Errorf("quarantine: %w", err)
			}
			if err := swapIn(exe, lgBin); err != nil {
				return res, fmt.Errorf("rollback: %w", err)
			}
			_ = f.write("rollback.json", rollbackEvent{From: running, To: string(lgVer), Boots: st.Boots - 1, Nonce: nonce()})
			f.remove("last_swap.json")
			// The last-good binary was healthy: its starts do not count.
			_ = f.write("boot.json", bootState{Version: string(lgVer), Healthy: true})
			res.Rollback = true
			res.Quarantined = f.quarantine()
			return res, nil
		}
	}

	var sw lastSwap
	if ok, _ := f.read("last_swap.json", &sw); ok {
		if running != sw.Target {
			// The binary published under the target's label reports
			// another version (typically the one it replaced): every
			// further swap would loop. Refuse this target until it changes.
			log.Error("the binary published as the target reports another version; refusing this target until it changes",
				"target", sw.Target, "reports", running, "running_before", sw.RunningBefore)
			_ = f.write("loop_guard.json", loopGuard{Target: sw.Target, Reported: running, Nonce: sw.Nonce})
			f.remove("last_swap.json")
		}
		// Otherwise: swapped as intended; confirmed (agent_update) once
		// healthy.
	}
	return res, nil
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
