package inventory

import (
	"reflect"
	"testing"

	"github.com/kanade-project/kanade/internal/wire"
)

// TestParseRPMQuery: "(none)" is empty, gpg-pubkey pseudo-packages are
// dropped, malformed lines are counted, CRLF tolerated.
func TestParseRPMQuery(t *testing.T) {
	out := "bash\t5.1.8-6.el9\tRed Hat, Inc.\tx86_64\n" +
		"gpg-pubkey\tfd431d51-4ae0493b\t(none)\t(none)\n" +
		"mine\t1.0-1\t(none)\tnoarch\r\n" +
		"\n" +
		"only\ttwo\n" +
		"\tno-name\tv\tx86_64\n"
	got, bad := parseRPMQuery(out)
	want := []rpmRecord{
		{Name: "bash", Version: "5.1.8-6.el9", Vendor: "Red Hat, Inc.", Arch: "x86_64"},
		{Name: "mine", Version: "1.0-1", Arch: "noarch"},
	}
	if !reflect.DeepEqual(got, want) || bad != 2 {
		t.Errorf("got %+v, %d bad; want %+v, 2 bad", got, bad, want)
	}
}

// TestRPMProgramsNaming: ".arch" only for multilib names; several kernels
// stay separate.
func TestRPMProgramsNaming(t *testing.T) {
	got := rpmPrograms([]rpmRecord{
		{Name: "glibc", Version: "2.34", Arch: "x86_64"},
		{Name: "glibc", Version: "2.34", Arch: "i686"},
		{Name: "kernel", Version: "5.14.0-2", Arch: "x86_64"},
		{Name: "kernel", Version: "5.14.0-1", Arch: "x86_64"},
	})
	sortPackagePrograms(got)
	want := []wire.Program{
		{Name: "glibc.i686", Version: "2.34", Source: "rpm"},
		{Name: "glibc.x86_64", Version: "2.34", Source: "rpm"},
		{Name: "kernel", Version: "5.14.0-1", Source: "rpm"},
		{Name: "kernel", Version: "5.14.0-2", Source: "rpm"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
