// Package binfmt tells which platform an executable was built for, from
// its header alone (ELF, PE or Mach-O), without running it. `kanade agent
// publish` uses it so a binary can never be published under the wrong
// <os>-<arch>: an agent would download it, swap to it and fail to boot.
package binfmt

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotExecutable is returned (wrapped) for a file that is neither an ELF,
// a PE nor a Mach-O file.
var ErrNotExecutable = errors.New("not an executable: expected an ELF, PE or Mach-O binary")

// Detect returns the GOOS and GOARCH path was built for.
func Detect(path string) (goos, goarch string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var magic [4]byte
	n, err := io.ReadFull(f, magic[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	head := magic[:n]
	switch {
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		goos, goarch, err = detectELF(f)
	case bytes.HasPrefix(head, []byte("MZ")):
		goos, goarch, err = detectPE(f)
	case n == 4 && isMachO(magic):
		goos, goarch, err = detectMachO(f)
	case n == 4 && binary.BigEndian.Uint32(magic[:]) == macho.MagicFat:
		err = detectFat(f)
	default:
		err = ErrNotExecutable
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	if goos, err = checkGoBuild(f, goos, goarch); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	return goos, goarch, nil
}

// checkGoBuild refines the header's answer with the build settings a Go
// binary carries. An ELF header cannot tell Linux from Android, DragonFly,
// Solaris or illumos (all "System V"); the Go toolchain's own record can.
// A binary whose record contradicts its header in any other way is
// refused.
func checkGoBuild(r io.ReaderAt, goos, goarch string) (string, error) {
	bi, err := buildinfo.Read(r)
	if err != nil {
		return goos, nil // not a Go binary (or stripped of its build info)
	}
	var bos, barch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "GOOS":
			bos = s.Value
		case "GOARCH":
			barch = s.Value
		}
	}
	if barch != "" && barch != goarch {
		return "", fmt.Errorf("header says %s/%s but the Go build info says GOARCH=%s", goos, goarch, barch)
	}
	if bos == "" || bos == goos {
		return goos, nil
	}
	if goos == "linux" {
		return bos, nil
	}
	return "", fmt.Errorf("header says %s/%s but the Go build info says GOOS=%s", goos, goarch, bos)
}

func isMachO(m [4]byte) bool {
	for _, v := range []uint32{binary.BigEndian.Uint32(m[:]), binary.LittleEndian.Uint32(m[:])} {
		if v == macho.Magic32 || v == macho.Magic64 {
			return true
		}
	}
	return false
}

func detectELF(r io.ReaderAt) (string, string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", "", fmt.Errorf("malformed ELF file: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", "", fmt.Errorf("ELF file of type %s, not an executable", f.Type)
	}
	var arch string
	switch f.Machine {
	case elf.EM_X86_64:
		arch = "amd64"
	case elf.EM_AARCH64:
		arch = "arm64"
	case elf.EM_386:
		arch = "386"
	case elf.EM_ARM:
		arch = "arm"
	case elf.EM_RISCV:
		if f.Class == elf.ELFCLASS64 {
			arch = "riscv64"
		}
	case elf.EM_PPC64:
		if f.ByteOrder == binary.LittleEndian {
			arch = "ppc64le"
		} else {
			arch = "ppc64"
		}
	case elf.EM_S390:
		if f.Class == elf.ELFCLASS64 {
			arch = "s390x"
		}
	case elf.EM_LOONGARCH:
		if f.Class == elf.ELFCLASS64 {
			arch = "loong64"
		}
	}
	if arch == "" {
		return "", "", fmt.Errorf("ELF executable for an unsupported machine (%s, %s)", f.Machine, f.Class)
	}
	// Go marks FreeBSD binaries in the header and NetBSD/OpenBSD ones with
	// an identifying note; everything else is Linux (OSABI SYSV or Linux).
	switch f.OSABI {
	case elf.ELFOSABI_NONE, elf.ELFOSABI_LINUX:
	case elf.ELFOSABI_FREEBSD:
		return "freebsd", arch, nil
	case elf.ELFOSABI_NETBSD:
		return "netbsd", arch, nil
	case elf.ELFOSABI_OPENBSD:
		return "openbsd", arch, nil
	default:
		return "", "", fmt.Errorf("ELF executable for an unsupported operating system (%s)", f.OSABI)
	}
	switch {
	case f.Section(".note.netbsd.ident") != nil:
		return "netbsd", arch, nil
	case f.Section(".note.openbsd.ident") != nil:
		return "openbsd", arch, nil
	}
	return "linux", arch, nil
}

func detectPE(r io.ReaderAt) (string, string, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		// "MZ" alone is two common letters: a text file can start with
		// them. Only a valid PE signature makes it a (broken) executable.
		var sig [4]byte
		var off [4]byte
		if _, e := r.ReadAt(off[:], 0x3c); e == nil {
			if _, e := r.ReadAt(sig[:], int64(binary.LittleEndian.Uint32(off[:]))); e == nil && string(sig[:]) == "PE\x00\x00" {
				return "", "", fmt.Errorf("malformed PE file: %w", err)
			}
		}
		return "", "", ErrNotExecutable
	}
	defer f.Close()
	if f.Characteristics&pe.IMAGE_FILE_DLL != 0 {
		return "", "", errors.New("PE file is a DLL, not an executable")
	}
	if f.Characteristics&pe.IMAGE_FILE_EXECUTABLE_IMAGE == 0 {
		return "", "", errors.New("PE file is not an executable image")
	}
	switch f.Machine {
	case pe.IMAGE_FILE_MACHINE_AMD64:
		return "windows", "amd64", nil
	case pe.IMAGE_FILE_MACHINE_ARM64:
		return "windows", "arm64", nil
	case pe.IMAGE_FILE_MACHINE_I386:
		return "windows", "386", nil
	case pe.IMAGE_FILE_MACHINE_ARMNT:
		return "windows", "arm", nil
	}
	return "", "", fmt.Errorf("PE executable for an unsupported machine (0x%04x)", f.Machine)
}

func detectMachO(r io.ReaderAt) (string, string, error) {
	f, err := macho.NewFile(r)
	if err != nil {
		return "", "", fmt.Errorf("malformed Mach-O file: %w", err)
	}
	defer f.Close()
	if f.Type != macho.TypeExec {
		return "", "", fmt.Errorf("Mach-O file of type %s, not an executable", f.Type)
	}
	switch f.Cpu {
	case macho.CpuAmd64:
		return "darwin", "amd64", nil
	case macho.CpuArm64:
		return "darwin", "arm64", nil
	}
	return "", "", fmt.Errorf("Mach-O executable for an unsupported CPU (%s)", f.Cpu)
}

// detectFat explains why a universal binary cannot be published: each
// release object is one platform.
func detectFat(r io.ReaderAt) error {
	f, err := macho.NewFatFile(r)
	if err != nil {
		// 0xcafebabe is also the magic of Java class files.
		return ErrNotExecutable
	}
	defer f.Close()
	var cpus []string
	for _, a := range f.Arches {
		cpus = append(cpus, a.Cpu.String())
	}
	return fmt.Errorf("universal Mach-O binary (%v): publish one binary per architecture", cpus)
}
