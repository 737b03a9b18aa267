/*
 * bcryptprimitives.c: a stand-in for Windows' bcryptprimitives.dll, for
 * running Go's Windows test binaries under Wine 8 only. Never ship it.
 *
 * Since Go 1.22 the Windows runtime draws its random bytes from
 * bcryptprimitives.dll!ProcessPrng, loaded from system32 and nowhere else,
 * and aborts at start-up without it. Wine 8 has no such DLL, so a Go 1.26
 * .exe dies before main. Wine does implement advapi32!SystemFunction036
 * (RtlGenRandom), which fills a buffer from the host's CSPRNG; forwarding to
 * it is all ProcessPrng has to do.
 */
#include <windows.h>

/* Declared here rather than through ntsecapi.h, which hides it behind the
 * RtlGenRandom macro. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* ProcessPrng takes a SIZE_T length while RtlGenRandom takes a ULONG, so a
 * request above 4 GiB is served in chunks. The real function never fails;
 * this one reports a failure of the host's generator instead of hiding it. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
	while (length > 0) {
		ULONG n = length > 0x40000000 ? 0x40000000 : (ULONG)length;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		length -= n;
	}
	return TRUE;
}
